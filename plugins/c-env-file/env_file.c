/*
 * env-file: a privy source written in C, to prove the contract is
 * language-neutral. It reads one granted file of KEY=VALUE lines (the
 * `.env` format CI systems and developers already keep tokens in) and
 * returns each key as a private file `<prefix>/<KEY>` holding VALUE.
 *
 * Config:
 *   file    absolute path of the env file; must be in grant.files
 *   prefix  directory under the target (default "env")
 *
 * Blank lines and lines starting with '#' are skipped; a leading
 * "export " is allowed; VALUE may be wrapped in double or single quotes.
 * A malformed line fails the fetch with invalid-config naming the line
 * number, never its content.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "source_plugin.h"

typedef source_plugin_string_t str_t;

static void fail(exports_privy_source_source_source_error_t *err, uint8_t tag, const char *msg) {
    err->tag = tag;
    /* every variant case holds a string at the same place */
    source_plugin_string_dup(&err->val.other, msg);
}

static int config(const char *key, str_t *out) {
    str_t k;
    source_plugin_string_set(&k, key);
    return privy_source_host_config(&k, out);
}

static int valid_key(const uint8_t *p, size_t n) {
    if (n == 0 || n > 128) return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        if (!ok) return 0;
    }
    return !(n == 1 && p[0] == '.') && !(n == 2 && p[0] == '.' && p[1] == '.');
}

static int wanted(const exports_privy_source_source_request_t *req, const char *path, size_t len) {
    if (req->names.len == 0) return 1;
    for (size_t i = 0; i < req->names.len; i++) {
        const str_t *n = &req->names.ptr[i];
        if (n->len == len && memcmp(n->ptr, path, len) == 0) return 1;
    }
    return 0;
}

bool exports_privy_source_source_fetch(exports_privy_source_source_request_t *req,
                                       exports_privy_source_source_list_private_file_t *ret,
                                       exports_privy_source_source_source_error_t *err) {
    bool ok = false;
    str_t file = {0}, prefix = {0}, read_err = {0};
    source_plugin_list_u8_t data = {0};
    ret->ptr = NULL;
    ret->len = 0;

    if (!config("file", &file)) {
        fail(err, PRIVY_SOURCE_TYPES_SOURCE_ERROR_INVALID_CONFIG, "config key `file` is required");
        goto out;
    }
    if (!config("prefix", &prefix)) source_plugin_string_dup(&prefix, "env");
    if (!privy_source_host_read_file(&file, &data, &read_err)) {
        /* the host's message names the path and why; pass it on */
        err->tag = PRIVY_SOURCE_TYPES_SOURCE_ERROR_UNAVAILABLE;
        err->val.unavailable = read_err;
        read_err.ptr = NULL;
        goto out;
    }

    size_t cap = 8, line_no = 0, pos = 0;
    ret->ptr = calloc(cap, sizeof(*ret->ptr));
    while (pos < data.len) {
        size_t end = pos;
        while (end < data.len && data.ptr[end] != '\n') end++;
        const uint8_t *l = data.ptr + pos;
        size_t n = end - pos;
        pos = end + 1;
        line_no++;
        while (n && (l[n - 1] == '\r' || l[n - 1] == ' ' || l[n - 1] == '\t')) n--;
        while (n && (*l == ' ' || *l == '\t')) { l++; n--; }
        if (n == 0 || *l == '#') continue;
        if (n > 7 && memcmp(l, "export ", 7) == 0) { l += 7; n -= 7; }
        const uint8_t *eq = memchr(l, '=', n);
        if (!eq || !valid_key(l, (size_t)(eq - l))) {
            char msg[96];
            snprintf(msg, sizeof msg, "line %zu: expected KEY=VALUE with KEY of A-Z a-z 0-9 _ . -", line_no);
            fail(err, PRIVY_SOURCE_TYPES_SOURCE_ERROR_INVALID_CONFIG, msg);
            goto out;
        }
        size_t klen = (size_t)(eq - l);
        const uint8_t *v = eq + 1;
        size_t vlen = n - klen - 1;
        if (vlen >= 2 && (v[0] == '"' || v[0] == '\'') && v[vlen - 1] == v[0]) { v++; vlen -= 2; }

        size_t plen = prefix.len + 1 + klen;
        char *path = malloc(plen);
        memcpy(path, prefix.ptr, prefix.len);
        path[prefix.len] = '/';
        memcpy(path + prefix.len + 1, l, klen);
        if (!wanted(req, path, plen)) { free(path); continue; }

        if (ret->len == cap) {
            cap *= 2;
            ret->ptr = realloc(ret->ptr, cap * sizeof(*ret->ptr));
        }
        exports_privy_source_source_private_file_t *f = &ret->ptr[ret->len++];
        f->path.ptr = (uint8_t *)path;
        f->path.len = plen;
        f->data.ptr = malloc(vlen ? vlen : 1);
        memcpy(f->data.ptr, v, vlen);
        f->data.len = vlen;
        f->mode.is_some = true;
        f->mode.val = 0400;
    }
    ok = true;

out:
    if (!ok && ret->ptr) {
        exports_privy_source_source_list_private_file_free(ret);
        ret->ptr = NULL;
        ret->len = 0;
    }
    if (data.ptr) {
        memset(data.ptr, 0, data.len); /* the values were secrets: wipe our copy */
        source_plugin_list_u8_free(&data);
    }
    source_plugin_string_free(&file);
    source_plugin_string_free(&prefix);
    source_plugin_string_free(&read_err);
    exports_privy_source_source_request_free(req);
    return ok;
}
