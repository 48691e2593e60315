/* SPDX-License-Identifier: MIT */
/*
 * The schema engine, part 2: typed option values.
 *
 * A diskimg_options is bound to one option set of a schema.  Values are
 * validated when they are set, so that the error names the option the
 * user typed; getters then fall back to the schema default.  This file
 * also owns the size syntax and the -o help text, which both describe
 * values the way qemu-img users know them.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "schema-private.h"

/* ------------------------------------------------------------------ sizes */

static const char size_suffixes[] = "kMGTPE";

/* The power of two a unit letter stands for ('b'/'B' = bytes), or -1. */
static int suffix_shift(char c)
{
    if (c == 'b' || c == 'B')
        return 0;
    const char *p = strchr(size_suffixes, c == 'k' ? 'k' : g_ascii_toupper(c));
    if (c == 'K')
        p = size_suffixes;
    return p && *p ? 10 * (int)(p - size_suffixes + 1) : -1;
}

static uint64_t fraction_times_power_of_two(const char *digits, size_t ndigits, unsigned shift)
{
    uint64_t numerator = 0, denominator = 1;
    for (size_t i = 0; i < ndigits && i < 18; i++) {
        numerator = numerator * 10 + (uint64_t)(digits[i] - '0');
        denominator *= 10;
    }
    uint64_t quotient = 0;
    for (unsigned bit = 0; bit < shift; bit++) {
        numerator *= 2;
        quotient *= 2;
        if (numerator >= denominator) {
            numerator -= denominator;
            quotient += 1;
        }
    }
    return quotient;
}

static int size_error(GError **errp, const char *text, const char *why)
{
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "invalid size '%s': %s", text, why);
    return -1;
}

/* Out of range: a code of its own so that callers can word it as qemu does
 * ("Must be between 0 and ..."). */
static int size_range_error(GError **errp, const char *text)
{
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_FAILED,
                "invalid size '%s': the value is too large", text);
    return -1;
}

/* Digits of `base` at *p; false on overflow. */
static bool read_integer(const char **p, unsigned base, uint64_t *out)
{
    uint64_t v = 0;
    for (; base == 16 ? g_ascii_isxdigit(**p) : g_ascii_isdigit(**p); (*p)++) {
        unsigned digit = (unsigned)g_ascii_xdigit_value(**p);
        if (v > (UINT64_MAX - digit) / base)
            return false;
        v = v * base + digit;
    }
    *out = v;
    return true;
}

/* As qemu_strtosz: leading blanks, decimal with an optional fraction or
 * 0x hexadecimal (no fraction; a unit after it is deprecated), then at
 * most one unit letter. */
int diskimg_parse_size(const char *text, uint64_t *out, GError **errp)
{
    static const char syntax[] =
        "use a number with an optional k, M, G, T, P or E suffix";
    const char *p = text;
    while (g_ascii_isspace(*p))
        p++;
    if (*p == '-')
        return size_error(errp, text, "sizes cannot be negative");
    bool hex = p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && g_ascii_isxdigit(p[2]);
    if (hex)
        p += 2;
    if (!(hex ? g_ascii_isxdigit(*p) : g_ascii_isdigit(*p)))
        return size_error(errp, text, syntax);
    uint64_t whole;
    if (!read_integer(&p, hex ? 16 : 10, &whole))
        return size_range_error(errp, text);
    const char *fraction = NULL;
    size_t fraction_len = 0;
    if (*p == '.') {
        if (hex)
            return size_error(errp, text, "hexadecimal sizes cannot have a fraction");
        fraction = ++p;
        while (g_ascii_isdigit(*p))
            p++;
        fraction_len = (size_t)(p - fraction);
        if (fraction_len == 0)
            return size_error(errp, text, syntax);
    }
    int shift = *p ? suffix_shift(*p) : 0;
    if (shift < 0)
        return size_error(errp, text, syntax);
    if (*p && hex)
        diskimg_warn("Using a multiplier suffix on hex numbers is deprecated: %s", text);
    if (*p)
        p++;
    if (*p)
        return size_error(errp, text, syntax);
    if (fraction && shift == 0)
        return size_error(errp, text, "a fraction needs a k, M, G, T, P or E suffix");
    if (shift && whole > (UINT64_MAX >> shift))
        return size_range_error(errp, text);
    uint64_t value = whole << shift;
    uint64_t extra = fraction ? fraction_times_power_of_two(fraction, fraction_len,
                                                            (unsigned)shift) : 0;
    if (value > UINT64_MAX - extra)
        return size_range_error(errp, text);
    *out = value + extra;
    return 0;
}

char *format_size_suffix(uint64_t v)
{
    for (unsigned i = sizeof(size_suffixes) - 1; i > 0; i--) {
        unsigned shift = 10 * i;
        if (v && (v & ((UINT64_C(1) << shift) - 1)) == 0)
            return g_strdup_printf("%" G_GUINT64_FORMAT "%c", v >> shift, size_suffixes[i - 1]);
    }
    return g_strdup_printf("%" G_GUINT64_FORMAT, v);
}

/* ----------------------------------------------------------------- values */

void option_value_clear(struct option_value *v)
{
    g_clear_pointer(&v->text, g_free);
}

bool parse_int_text(const char *text, int64_t *out)
{
    if (g_ascii_strncasecmp(text, "0x", 2) == 0) {
        guint64 u;
        if (!g_ascii_string_to_unsigned(text + 2, 16, 0, INT64_MAX, &u, NULL))
            return false;
        *out = (int64_t)u;
        return true;
    }
    gint64 i;
    if (!g_ascii_string_to_signed(text, 10, INT64_MIN, INT64_MAX, &i, NULL))
        return false;
    *out = i;
    return true;
}

static bool is_power_of_two(uint64_t v)
{
    return v && !(v & (v - 1));
}

static char *format_bound(const struct schema_member *m, const struct option_value *b)
{
    if (m->type == MT_SIZE)
        return format_size_suffix(b->v.u);
    return g_strdup_printf("%" G_GINT64_FORMAT, b->v.i);
}

/* "a power of two between 512 and 2M", "an integer of at least 1"... */
static char *describe_number(const struct schema_member *m)
{
    const char *noun = m->power_of_two ? "a power of two"
                       : m->type == MT_SIZE ? "a size" : "an integer";
    g_autofree char *min = m->has_min ? format_bound(m, &m->min) : NULL;
    g_autofree char *max = m->has_max ? format_bound(m, &m->max) : NULL;
    if (min && max)
        return g_strdup_printf("%s between %s and %s", noun, min, max);
    if (min)
        return g_strdup_printf("%s of at least %s", noun, min);
    if (max)
        return g_strdup_printf("%s of at most %s", noun, max);
    return g_strdup(noun);
}

static bool in_range(const struct schema_member *m, const struct option_value *v)
{
    if (m->type == MT_SIZE) {
        return (!m->has_min || v->v.u >= m->min.v.u) && (!m->has_max || v->v.u <= m->max.v.u) &&
               (!m->power_of_two || is_power_of_two(v->v.u));
    }
    return (!m->has_min || v->v.i >= m->min.v.i) && (!m->has_max || v->v.i <= m->max.v.i) &&
           (!m->power_of_two || (v->v.i > 0 && is_power_of_two((uint64_t)v->v.i)));
}

/* Numbers are quoted in messages only when they did not read as numbers. */
static bool parse_number_value(const struct schema_member *m, const char *text,
                               struct option_value *out, char **why)
{
    bool readable = m->type == MT_SIZE ? diskimg_parse_size(text, &out->v.u, NULL) == 0
                                       : parse_int_text(text, &out->v.i);
    if (readable && in_range(m, out))
        return true;
    g_autofree char *wanted = describe_number(m);
    *why = readable ? g_strdup_printf("%s must be %s, not %s", m->path, wanted, text)
                    : g_strdup_printf("%s must be %s, not '%s'", m->path, wanted, text);
    return false;
}

static bool parse_bool_value(const struct schema_member *m, const char *text,
                             struct option_value *out, char **why)
{
    static const char *const yes[] = { "on", "true", "yes", NULL };
    static const char *const no[] = { "off", "false", "no", NULL };
    if (g_strv_contains(yes, text) || g_strv_contains(no, text)) {
        out->v.b = g_strv_contains(yes, text);
        return true;
    }
    *why = g_strdup_printf("%s must be on or off, not '%s'", m->path, text);
    return false;
}

static bool parse_enum_value(const struct schema_member *m, const char *text, char **why)
{
    if (g_strv_contains((const char *const *)m->values, text))
        return true;
    g_autofree char *values = g_strjoinv(", ", m->values);
    *why = g_strdup_printf("%s must be one of %s, not '%s'", m->path, values, text);
    return false;
}

bool member_parse_value(const struct schema_member *m, const char *text,
                        struct option_value *out, char **why)
{
    struct option_value v = { 0 };
    bool ok = true;
    switch (m->type) {
    case MT_INT:
    case MT_SIZE:
        ok = parse_number_value(m, text, &v, why);
        break;
    case MT_BOOL:
        ok = parse_bool_value(m, text, &v, why);
        break;
    case MT_ENUM:
        ok = parse_enum_value(m, text, why);
        break;
    case MT_SECRET_ID:
        if (!*text) {
            *why = g_strdup_printf("%s must be the id of a secret object, not ''", m->path);
            ok = false;
        }
        break;
    case MT_STR:
        break;
    default:
        *why = g_strdup_printf("%s cannot be given a value", m->path);
        ok = false;
        break;
    }
    if (!ok)
        return false;
    v.text = g_strdup(text);
    *out = v;
    return true;
}

/* ---------------------------------------------------------------- options */

/* A set option: a scalar value, or the items of a list option. */
struct set_value {
    struct option_value scalar;
    GPtrArray *items;       /* lists: char *, NULL-terminated */
};

struct diskimg_options {
    const diskimg_schema *schema;
    const struct member_set *set;   /* NULL when the schema lacks the set */
    GHashTable *values;             /* leaf path -> struct set_value* */
    /* leaf path -> text of the last value refused with VALUE_REFUSED: not
     * set, but shown by the Formatting line as qemu-img shows it (its
     * drivers refuse such values only after that line is printed). */
    GHashTable *refused;
};

static void set_value_free(struct set_value *sv)
{
    option_value_clear(&sv->scalar);
    if (sv->items)
        g_ptr_array_free(sv->items, TRUE);
    g_free(sv);
}

diskimg_options *diskimg_options_new(const diskimg_schema *s, const char *set)
{
    g_return_val_if_fail(s != NULL, NULL);
    diskimg_options *o = g_new0(diskimg_options, 1);
    o->schema = s;
    o->set = schema_find_option_set(s, set);
    o->values = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                      (GDestroyNotify)set_value_free);
    o->refused = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);
    return o;
}

const diskimg_schema *diskimg_options_schema(const diskimg_options *o)
{
    return o ? o->schema : NULL;
}

void diskimg_options_free(diskimg_options *o)
{
    if (!o)
        return;
    g_hash_table_destroy(o->values);
    g_hash_table_destroy(o->refused);
    g_free(o);
}

static const struct schema_member *find_leaf(const diskimg_options *o, const char *key)
{
    if (!o || !o->set || !key)
        return NULL;
    return g_hash_table_lookup(o->set->lookup, key);
}

static const struct set_value *find_value(const diskimg_options *o, const char *key)
{
    const struct schema_member *m = find_leaf(o, key);
    return m ? g_hash_table_lookup(o->values, m->path) : NULL;
}

/* Edit distance, for "did you mean"; option names are short. */
static guint levenshtein(const char *a, const char *b)
{
    size_t lb = strlen(b);
    g_autofree guint *row = g_new(guint, lb + 1);
    for (size_t j = 0; j <= lb; j++)
        row[j] = (guint)j;
    for (size_t i = 1; a[i - 1]; i++) {
        guint diagonal = row[0];
        row[0] = (guint)i;
        for (size_t j = 1; j <= lb; j++) {
            guint above = row[j];
            guint cost = a[i - 1] == b[j - 1] ? 0 : 1;
            row[j] = MIN(MIN(row[j] + 1, row[j - 1] + 1), diagonal + cost);
            diagonal = above;
        }
    }
    return row[lb];
}

/* The closest option name: edit distance <= 3 first, else a prefix match. */
static const char *closest_name(const struct member_set *set, const char *key)
{
    const char *best = NULL, *prefixed = NULL;
    guint best_distance = 4;
    for (guint i = 0; set && i < set->leaves->len; i++) {
        const struct schema_member *m = g_ptr_array_index(set->leaves, i);
        guint d = levenshtein(key, m->path);
        if (d < best_distance) {
            best_distance = d;
            best = m->path;
        }
        if (!prefixed && *key && (g_str_has_prefix(m->path, key) || g_str_has_prefix(key, m->path)))
            prefixed = m->path;
    }
    return best ? best : prefixed;
}

/* Users see qemu-img's words for a refused option; the closest name
 * follows on a line of its own. */
static int unknown_option(const diskimg_options *o, const char *key, GError **errp)
{
    const char *guess = closest_name(o->set, key);
    if (guess)
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Invalid parameter '%s'\nDid you mean '%s'?", key, guess);
    else
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "Invalid parameter '%s'", key);
    return -1;
}

/* Whether qemu's option parser (QemuOpts) would refuse the text already:
 * a bool, size or int that does not read as one. */
static bool is_type_error(const struct schema_member *m, const char *text)
{
    uint64_t u;
    int64_t i;
    return m->type == MT_BOOL || (m->type == MT_SIZE && diskimg_parse_size(text, &u, NULL) < 0) ||
           (m->type == MT_INT && !parse_int_text(text, &i));
}

/* qemu-img's message for a value it refuses: QemuOpts' wording when the
 * text is not of the type, else the schema's `invalid` text ("%s" = the
 * value) or QAPI's enum wording; NULL where qemu has nothing better (then
 * the descriptive text, which names the allowed range, is used). */
static char *refusal_message(const struct schema_member *m, const char *text)
{
    uint64_t u;
    int64_t i;
    if (m->type == MT_BOOL)
        return g_strdup_printf("Parameter '%s' expects 'on' or 'off'", m->path);
    if (m->type == MT_SIZE && diskimg_parse_size(text, &u, NULL) < 0)
        return g_strdup_printf("Parameter '%s' expects a non-negative number below 2^64\n"
                               "Optional suffix k, M, G, T, P or E means kilo-, mega-, "
                               "giga-, tera-, peta-\nand exabytes, respectively.", m->path);
    if (m->type == MT_INT && !parse_int_text(text, &i))
        return g_strdup_printf("Parameter '%s' expects a number", m->path);
    if (m->invalid) {
        g_auto(GStrv) pieces = g_strsplit(m->invalid, "%s", -1);
        return g_strjoinv(text, pieces);
    }
    if (m->type == MT_ENUM)
        return g_strdup_printf("Parameter '%s' does not accept value '%s'", m->path, text);
    return NULL;
}

static struct set_value *value_slot(diskimg_options *o, const struct schema_member *m)
{
    struct set_value *sv = g_hash_table_lookup(o->values, m->path);
    if (!sv) {
        sv = g_new0(struct set_value, 1);
        g_hash_table_insert(o->values, m->path, sv);
    }
    return sv;
}

int diskimg_options_set(diskimg_options *o, const char *key, const char *value, GError **errp)
{
    g_return_val_if_fail(o && key && value, -1);
    const struct schema_member *m = find_leaf(o, key);
    if (!m)
        return unknown_option(o, key, errp);
    const struct schema_member *checked = m->type == MT_LIST ? m->element : m;
    const char *refusal = checked->refused ? g_hash_table_lookup(checked->refused, value) : NULL;
    if (refusal) {
        g_hash_table_insert(o->refused, m->path, g_strdup(value));
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_VALUE_REFUSED, "%s", refusal);
        return -1;
    }
    struct option_value parsed;
    g_autofree char *why = NULL;
    if (!member_parse_value(checked, value, &parsed, &why)) {
        g_autofree char *qemu_text = refusal_message(checked, value);
        bool type_error = is_type_error(checked, value);
        if (!type_error && m->type != MT_LIST)
            g_hash_table_insert(o->refused, m->path, g_strdup(value));
        g_set_error(errp, DISKIMG_ERROR,
                    type_error ? DISKIMG_ERROR_INVALID : DISKIMG_ERROR_VALUE_REFUSED,
                    "%s", qemu_text ? qemu_text : why);
        return -1;
    }
    g_hash_table_remove(o->refused, m->path);
    struct set_value *sv = value_slot(o, m);
    if (m->type == MT_LIST) {
        if (!sv->items)
            sv->items = g_ptr_array_new_with_free_func(g_free);
        else
            g_ptr_array_remove_index(sv->items, sv->items->len - 1); /* the NULL */
        g_ptr_array_add(sv->items, g_steal_pointer(&parsed.text));
        g_ptr_array_add(sv->items, NULL);
        return 0;
    }
    option_value_clear(&sv->scalar);  /* the last value wins, as in qemu */
    sv->scalar = parsed;
    return 0;
}

/* Splits a qemu option string on ',' (",," is a literal comma). */
static char **split_option_text(const char *text)
{
    GPtrArray *parts = g_ptr_array_new();
    GString *cur = g_string_new(NULL);
    for (const char *p = text;; p++) {
        if (*p == ',' && p[1] == ',') {
            g_string_append_c(cur, ',');
            p++;
        } else if (*p == ',' || !*p) {
            if (cur->len)
                g_ptr_array_add(parts, g_strdup(cur->str));
            g_string_truncate(cur, 0);
            if (!*p)
                break;
        } else {
            g_string_append_c(cur, *p);
        }
    }
    g_string_free(cur, TRUE);
    g_ptr_array_add(parts, NULL);
    return (char **)g_ptr_array_free(parts, FALSE);
}

int diskimg_options_parse(diskimg_options *o, const char *text, GError **errp)
{
    g_return_val_if_fail(o != NULL, -1);
    if (!text)
        return 0;
    g_auto(GStrv) parts = split_option_text(text);
    for (size_t i = 0; parts[i]; i++) {
        char *eq = strchr(parts[i], '=');
        if (eq)
            *eq = '\0';
        if (diskimg_options_set(o, parts[i], eq ? eq + 1 : "on", errp) < 0)
            return -1;
    }
    return 0;
}

bool diskimg_options_text_wants_help(const char *text)
{
    if (!text)
        return false;
    g_auto(GStrv) parts = split_option_text(text);
    for (size_t i = 0; parts[i]; i++) {
        if (!strcmp(parts[i], "help") || !strcmp(parts[i], "?"))
            return true;
    }
    return false;
}

/* Key of a struct ("encrypt") covering the leaves below it, or NULL. */
static bool is_struct_prefix(const char *key, const char *path)
{
    size_t n = strlen(key);
    return strncmp(path, key, n) == 0 && path[n] == '.';
}

void diskimg_options_unset(diskimg_options *o, const char *key)
{
    const struct schema_member *m = find_leaf(o, key);
    if (m) {
        g_hash_table_remove(o->values, m->path);
        return;
    }
    for (guint i = 0; o && o->set && i < o->set->leaves->len; i++) {
        const struct schema_member *leaf = g_ptr_array_index(o->set->leaves, i);
        if (is_struct_prefix(key, leaf->path))
            g_hash_table_remove(o->values, leaf->path);
    }
}

bool diskimg_options_has(const diskimg_options *o, const char *key)
{
    if (find_value(o, key))
        return true;
    for (guint i = 0; o && o->set && key && i < o->set->leaves->len; i++) {
        const struct schema_member *leaf = g_ptr_array_index(o->set->leaves, i);
        if (is_struct_prefix(key, leaf->path) && g_hash_table_contains(o->values, leaf->path))
            return true;
    }
    return false;
}

int diskimg_options_check_required(const diskimg_options *o, GError **errp)
{
    for (guint i = 0; o->set && i < o->set->leaves->len; i++) {
        const struct schema_member *m = g_ptr_array_index(o->set->leaves, i);
        if (m->required && !g_hash_table_contains(o->values, m->path)) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                        "%s: missing required option '%s'", schema_display_name(o->schema),
                        m->path);
            return -1;
        }
    }
    return 0;
}

/* The value a getter sees: set, else default, else NULL. */
static const struct option_value *effective_value(const diskimg_options *o, const char *key,
                                                  const struct schema_member **member)
{
    const struct schema_member *m = find_leaf(o, key);
    *member = m;
    if (!m || m->type == MT_LIST)
        return NULL;
    const struct set_value *sv = g_hash_table_lookup(o->values, m->path);
    if (sv)
        return &sv->scalar;
    return m->has_default ? &m->def : NULL;
}

const char *diskimg_options_get_str(const diskimg_options *o, const char *key)
{
    const struct schema_member *m;
    const struct option_value *v = effective_value(o, key, &m);
    return v ? v->text : NULL;
}

uint64_t diskimg_options_get_uint(const diskimg_options *o, const char *key, uint64_t fallback)
{
    const struct schema_member *m;
    const struct option_value *v = effective_value(o, key, &m);
    if (!v)
        return fallback;
    if (m->type == MT_SIZE)
        return v->v.u;
    if (m->type == MT_INT && v->v.i >= 0)
        return (uint64_t)v->v.i;
    return fallback;
}

int64_t diskimg_options_get_int(const diskimg_options *o, const char *key, int64_t fallback)
{
    const struct schema_member *m;
    const struct option_value *v = effective_value(o, key, &m);
    if (!v)
        return fallback;
    if (m->type == MT_INT)
        return v->v.i;
    if (m->type == MT_SIZE && v->v.u <= INT64_MAX)
        return (int64_t)v->v.u;
    return fallback;
}

bool diskimg_options_get_bool(const diskimg_options *o, const char *key, bool fallback)
{
    const struct schema_member *m;
    const struct option_value *v = effective_value(o, key, &m);
    return v && m->type == MT_BOOL ? v->v.b : fallback;
}

const char *const *diskimg_options_get_list(const diskimg_options *o, const char *key)
{
    const struct set_value *sv = find_value(o, key);
    return sv && sv->items ? (const char *const *)sv->items->pdata : NULL;
}

/* --------------------------------------------------------------- printing */

static void append_escaped(GString *out, const char *text)
{
    for (const char *p = text; *p; p++) {
        if (*p == ',')
            g_string_append_c(out, ',');
        g_string_append_c(out, *p);
    }
}

char *diskimg_options_to_string(const diskimg_options *o)
{
    GString *out = g_string_new(NULL);
    for (guint i = 0; o->set && i < o->set->leaves->len; i++) {
        const struct schema_member *m = g_ptr_array_index(o->set->leaves, i);
        const struct set_value *sv = g_hash_table_lookup(o->values, m->path);
        if (!sv)
            continue;
        for (guint j = 0; sv->items ? sv->items->pdata[j] != NULL : j == 0; j++) {
            const char *text = sv->items ? sv->items->pdata[j] : sv->scalar.text;
            g_string_append_printf(out, "%s%s=", out->len ? "," : "", m->path);
            append_escaped(out, text);
        }
    }
    return g_string_free(out, FALSE);
}

/* One "key=value" of the Formatting line as qemu-img 7.2 prints it
 * (qemu_opts_print): numbers in bytes, everything else as written. */
static void append_formatted(GString *out, const struct schema_member *m,
                             const struct option_value *v)
{
    if (out->len)
        g_string_append_c(out, ' ');
    g_string_append_printf(out, "%s=", m->path);
    switch (m->type) {
    case MT_SIZE:
        g_string_append_printf(out, "%" G_GUINT64_FORMAT, v->v.u);
        break;
    case MT_INT:
        g_string_append_printf(out, "%" G_GINT64_FORMAT, v->v.i);
        break;
    default:
        g_string_append(out, v->text);
        break;
    }
}

/* A refused value is of the member's type: numbers print in decimal as
 * QemuOpts parsed them, the rest as typed. */
static void append_refused(GString *out, const struct schema_member *m, const char *text)
{
    struct option_value v = { .text = (char *)text };
    if (m->type == MT_SIZE)
        (void)diskimg_parse_size(text, &v.v.u, NULL);
    else if (m->type == MT_INT)
        (void)parse_int_text(text, &v.v.i);
    append_formatted(out, m, &v);
}

char *diskimg_options_format_line(const diskimg_options *o)
{
    GString *out = g_string_new(NULL);
    for (guint i = 0; o->set && i < o->set->leaves->len; i++) {
        const struct schema_member *m = g_ptr_array_index(o->set->leaves, i);
        const struct set_value *sv = g_hash_table_lookup(o->values, m->path);
        if (m->type == MT_LIST) {
            for (guint j = 0; sv && sv->items->pdata[j]; j++) {
                struct option_value item = { 0 };
                g_autofree char *why = NULL;
                if (member_parse_value(m->element, sv->items->pdata[j], &item, &why))
                    append_formatted(out, m->element, &item);
                option_value_clear(&item);
            }
        } else if (sv) {
            append_formatted(out, m, &sv->scalar);
        } else if (g_hash_table_contains(o->refused, m->path)) {
            append_refused(out, m, g_hash_table_lookup(o->refused, m->path));
        } else if (m->has_default && !m->hide_default) {
            /* qemu's defaults are written on/off */
            struct option_value def = m->def;
            if (m->type == MT_BOOL)
                def.text = (char *)(m->def.v.b ? "on" : "off");
            append_formatted(out, m, &def);
        }
    }
    return g_string_free(out, FALSE);
}

static JsonNode *typed_json(const struct schema_member *m, const char *text)
{
    struct option_value v = { 0 };
    g_autofree char *why = NULL;
    JsonNode *n = json_node_alloc();
    if (!member_parse_value(m, text, &v, &why))
        return json_node_init_string(n, text);
    if (m->type == MT_SIZE)
        json_node_init_int(n, (gint64)v.v.u);
    else if (m->type == MT_INT)
        json_node_init_int(n, v.v.i);
    else if (m->type == MT_BOOL)
        json_node_init_boolean(n, v.v.b);
    else
        json_node_init_string(n, text);
    option_value_clear(&v);
    return n;
}

/* The object that holds member `path` ("a.b.c" -> object a.b), created
 * on the way. */
static JsonObject *parent_object(JsonObject *root, const char *path, const char **leaf)
{
    JsonObject *obj = root;
    const char *dot;
    while ((dot = strchr(path, '.'))) {
        g_autofree char *part = g_strndup(path, (gsize)(dot - path));
        if (!json_object_has_member(obj, part))
            json_object_set_object_member(obj, part, json_object_new());
        obj = json_object_get_object_member(obj, part);
        path = dot + 1;
    }
    *leaf = path;
    return obj;
}

JsonNode *diskimg_options_to_json(const diskimg_options *o)
{
    JsonObject *root = json_object_new();
    for (guint i = 0; o->set && i < o->set->leaves->len; i++) {
        const struct schema_member *m = g_ptr_array_index(o->set->leaves, i);
        const struct set_value *sv = g_hash_table_lookup(o->values, m->path);
        if (!sv)
            continue;
        const char *leaf;
        JsonObject *parent = parent_object(root, m->path, &leaf);
        if (m->type != MT_LIST) {
            json_object_set_member(parent, leaf, typed_json(m, sv->scalar.text));
            continue;
        }
        JsonArray *items = json_array_new();
        for (guint j = 0; sv->items->pdata[j]; j++)
            json_array_add_element(items, typed_json(m->element, sv->items->pdata[j]));
        json_object_set_array_member(parent, leaf, items);
    }
    JsonNode *node = json_node_init_object(json_node_alloc(), root);
    json_object_unref(root);
    return node;
}

/* ------------------------------------------------------------------- help */

static const char *help_type(const struct schema_member *m)
{
    switch (m->type) {
    case MT_BOOL:
        return "bool (on/off)";
    case MT_INT:
        return "num";
    case MT_SIZE:
        return "size";
    case MT_LIST:
        return help_type(m->element);
    default:
        return "str";
    }
}

static char *format_default(const struct schema_member *m)
{
    if (m->type == MT_SIZE)
        return format_size_suffix(m->def.v.u);
    if (m->type == MT_BOOL)
        return g_strdup(m->def.v.b ? "on" : "off");
    return g_strdup(m->def.text);
}

/* "512 to 2M, power of two", "at least 1"... or NULL. */
static char *describe_range(const struct schema_member *m)
{
    g_autofree char *min = m->has_min ? format_bound(m, &m->min) : NULL;
    g_autofree char *max = m->has_max ? format_bound(m, &m->max) : NULL;
    g_autofree char *range = min && max ? g_strdup_printf("%s to %s", min, max)
                             : min      ? g_strdup_printf("at least %s", min)
                             : max      ? g_strdup_printf("at most %s", max)
                                        : NULL;
    if (m->power_of_two)
        return range ? g_strdup_printf("%s, power of two", range) : g_strdup("power of two");
    return g_steal_pointer(&range);
}

/* The parenthesised notes after the help text, joined by "; ". */
static char *help_extras(const struct schema_member *m)
{
    GPtrArray *notes = g_ptr_array_new_with_free_func(g_free);
    const struct schema_member *scalar = m->type == MT_LIST ? m->element : m;
    if (scalar->type == MT_ENUM) {
        g_autofree char *values = g_strjoinv(", ", scalar->values);
        g_ptr_array_add(notes, g_strdup_printf("allowed values: %s", values));
    }
    char *range = describe_range(scalar);
    if (range)
        g_ptr_array_add(notes, range);
    if (m->has_default) {
        g_autofree char *def = format_default(m);
        if (*def)   /* an empty default says nothing worth printing */
            g_ptr_array_add(notes, g_strdup_printf("default: %s", def));
    }
    if (m->deprecated)
        g_ptr_array_add(notes, g_strdup_printf("deprecated: %s", m->deprecated));
    g_ptr_array_add(notes, NULL);
    char *joined = notes->len > 1 ? g_strjoinv("; ", (char **)notes->pdata) : NULL;
    g_ptr_array_free(notes, TRUE);
    return joined;
}

static char *help_line(const struct schema_member *m)
{
    g_autofree char *name = g_strdup_printf("%s=<%s>", m->path, help_type(m));
    g_autofree char *extras = help_extras(m);
    GString *text = g_string_new(m->help);
    if (extras)
        g_string_append_printf(text, "%s(%s)", text->len ? " " : "", extras);
    char *line = text->len ? g_strdup_printf("  %-22s - %s\n", name, text->str)
                           : g_strdup_printf("  %s\n", name);
    g_string_free(text, TRUE);
    return line;
}

static int compare_lines(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char *diskimg_schema_options_help(const diskimg_schema *s, const char *set_name)
{
    const struct member_set *set = schema_find_option_set(s, set_name);
    GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; set && i < set->leaves->len; i++)
        g_ptr_array_add(lines, help_line(g_ptr_array_index(set->leaves, i)));
    /* qemu sorts the whole lines, which orders by option name. */
    g_ptr_array_sort(lines, compare_lines);
    GString *out = g_string_new(NULL);
    g_string_append_printf(out, "Supported %s options:\n", schema_display_name(s));
    for (guint i = 0; i < lines->len; i++)
        g_string_append(out, g_ptr_array_index(lines, i));
    g_ptr_array_free(lines, TRUE);
    return g_string_free(out, FALSE);
}
