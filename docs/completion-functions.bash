# The completion logic; docs/gen-completion.py puts the command tables above
# it.  What depends on the installed plugins is asked of diskimg each time.

# _diskimg_tool: the diskimg being completed (as typed, so a build tree's
# binary completes with its own plugins).
_diskimg_tool() {
    local tool=${words[0]}
    [[ $tool == */* ]] || tool=$(type -P "$tool" 2>/dev/null) || tool=diskimg
    printf '%s\n' "${tool:-diskimg}"
}

# _diskimg_formats: the installed format plugins.
_diskimg_formats() {
    "$(_diskimg_tool)" --list-formats 2>/dev/null | while read -r name _; do
        printf '%s\n' "$name"
    done
}

# _diskimg_io_backends: the installed io plugins ("io: posix uring") that
# serve local files.  Plugins with a `protocols:` list (http, nbd...) are
# reached by the scheme of the name, not with --io, so they are left out.
_diskimg_io_backends() {
    local tool name
    tool=$(_diskimg_tool)
    for name in $("$tool" schema --kind=io 2>/dev/null | sed -n 's/^io: //p'); do
        "$tool" schema --kind=io --output=json "$name" 2>/dev/null |
            grep -q '"protocols"' || printf '%s\n' "$name"
    done
}

# _diskimg_option_format CMD: the format that -o describes on this command
# line: the last -O (or -f, per command) given, else the flag's default.
_diskimg_option_format() {
    local cmd=$1 spec flag fmt i
    spec=${_diskimg_options_format[$cmd]}
    flag=${spec%% *}
    fmt=${spec#* }
    [[ $fmt == "$spec" ]] && fmt=
    for ((i = 1; i < cword; i++)); do
        if [[ ${words[i]} == "$flag" ]]; then
            fmt=${words[i + 1]}
        elif [[ ${words[i]} == "$flag"?* ]]; then
            fmt=${words[i]#"$flag"}
        fi
    done
    printf '%s\n' "$fmt"
}

# _diskimg_option_help CMD FMT: `diskimg CMD -f FMT -o help`, whose lines
# read "  key=<type> - help (allowed values: a, b; default: a)".
_diskimg_option_help() {
    local cmd=$1 fmt=$2 flag
    flag=${_diskimg_options_format[$cmd]%% *}
    "$(_diskimg_tool)" "$cmd" "$flag" "$fmt" -o help 2>/dev/null
}

# _diskimg_complete_options CMD CUR: one KEY[=VALUE] of a comma-separated
# -o list; the keys already typed stay in front.
_diskimg_complete_options() {
    local cmd=$1 cur=$2 fmt head item key line
    fmt=$(_diskimg_option_format "$cmd")
    [[ -n $fmt ]] || return
    head=
    item=$cur
    if [[ $cur == *,* ]]; then
        head=${cur%,*},
        item=${cur##*,}
    fi
    local -a choices=()
    if [[ $item == *=* ]]; then
        key=${item%%=*}
        while IFS= read -r line; do
            [[ $line == "  $key=<"* ]] || continue
            if [[ $line == *"=<bool"* ]]; then
                choices=(on off)
            elif [[ $line == *"(allowed values: "* ]]; then
                line=${line##*(allowed values: }
                line=${line%%[;)]*}
                IFS=', ' read -r -a choices <<<"$line"
            fi
        done < <(_diskimg_option_help "$cmd" "$fmt")
        mapfile -t COMPREPLY < <(compgen -P "$head$key=" -W "${choices[*]}" -- "${item#*=}")
    else
        while IFS= read -r line; do
            [[ $line =~ ^\ \ ([A-Za-z0-9_.-]+)=\< ]] && choices+=("${BASH_REMATCH[1]}=")
        done < <(_diskimg_option_help "$cmd" "$fmt")
        mapfile -t COMPREPLY < <(compgen -P "$head" -W "${choices[*]}" -- "$item")
        compopt -o nospace 2>/dev/null
    fi
}

# _diskimg_in WORD LIST: WORD is one of the words of LIST.
_diskimg_in() {
    [[ " $2 " == *" $1 "* ]]
}

# _diskimg_join_words: bash splits "key=value" at the '=' (COMP_WORDBREAKS);
# sets words/cword (the caller's locals) to the words as typed.
_diskimg_join_words() {
    local i w joined=0
    words=()
    cword=0
    for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
        w=${COMP_WORDS[i]}
        if ((${#words[@]} && i > 0)) && [[ $w == = || $joined == 1 ]]; then
            words[-1]+=$w
            [[ $w == = ]] && joined=1 || joined=0
        else
            words+=("$w")
            joined=0
        fi
        ((i == COMP_CWORD)) && cword=$((${#words[@]} - 1))
    done
}

_diskimg() {
    local -a words
    local cword
    _diskimg_join_words
    local cur=${words[cword]} prev= cmd= i
    ((cword > 0)) && prev=${words[cword - 1]}
    COMPREPLY=()
    for ((i = 1; i < cword; i++)); do
        if [[ ${words[i]} != -* ]]; then
            cmd=${words[i]}
            break
        fi
    done
    _diskimg_reply "$cmd" "$cur" "$prev"
    # When bash split the word at '=', it replaces only what follows the
    # last '=' (also when the word it completes is the '=' itself).
    if [[ $cur != "${COMP_WORDS[COMP_CWORD]}" ]]; then
        local drop=${cur%=*}=
        COMPREPLY=("${COMPREPLY[@]#"$drop"}")
    fi
    return 0
}

# _diskimg_reply CMD CUR PREV: fills COMPREPLY.
_diskimg_reply() {
    local cmd=$1 cur=$2 prev=$3

    if [[ -z $cmd ]]; then
        case $cur in
        --io=*)
            mapfile -t COMPREPLY < <(compgen -P --io= -W "$(_diskimg_io_backends)" -- "${cur#--io=}")
            ;;
        -*)
            mapfile -t COMPREPLY < <(compgen -W "$_diskimg_global_options" -- "$cur")
            [[ ${COMPREPLY[0]} == *= ]] && compopt -o nospace 2>/dev/null
            ;;
        *)
            mapfile -t COMPREPLY < <(compgen -W "$_diskimg_commands" -- "$cur")
            ;;
        esac
        return 0
    fi
    _diskimg_in "$cmd" "$_diskimg_commands" || return 0

    # The argument of a flag: a separate word after it, or --long=VALUE.
    local flag=$prev value=$cur prefix=
    if [[ $cur == --*=* ]]; then
        flag=${cur%%=*}
        value=${cur#*=}
        prefix=$flag=
    elif ! _diskimg_in "$prev" "${_diskimg_with_arg[$cmd]}"; then
        flag=
    fi
    if [[ -n $flag ]]; then
        if _diskimg_in "$flag" "${_diskimg_format_flags[$cmd]}"; then
            mapfile -t COMPREPLY < <(compgen -P "$prefix" -W "$(_diskimg_formats)" -- "$value")
        elif _diskimg_in "$flag" "${_diskimg_options_flag[$cmd]}"; then
            _diskimg_complete_options "$cmd" "$value"
        elif [[ -n ${_diskimg_values["$cmd $flag"]} ]]; then
            mapfile -t COMPREPLY < <(compgen -P "$prefix" -W "${_diskimg_values["$cmd $flag"]}" -- "$value")
        elif _diskimg_in "$flag" "${_diskimg_file_flags[$cmd]}"; then
            _diskimg_files "$value"
        fi
        return 0
    fi

    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${_diskimg_flags[$cmd]}" -- "$cur")
        [[ ${#COMPREPLY[@]} == 1 && ${COMPREPLY[0]} == *= ]] && compopt -o nospace 2>/dev/null
    else
        _diskimg_files "$cur"
    fi
}

# _diskimg_files CUR: file names; only these are quoted as file names
# (doing so for KEY= would escape the '=').
_diskimg_files() {
    compopt -o filenames 2>/dev/null
    mapfile -t COMPREPLY < <(compgen -f -- "$1")
}

complete -F _diskimg diskimg
