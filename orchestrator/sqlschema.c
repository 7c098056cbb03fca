/* The state directory and schema versioning that hearthd's SQLite
 * databases (store.c, journal.c) share. */
#include "sqlschema.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int sqlschema_make_dirs(const char *path, hearth_error_t *err)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return hearth_error_set(err, ENOTDIR, "state_dir %s", path);
        return 0;
    }
    cleanup_free char *p = strdup(path);
    if (p == NULL)
        return hearth_error_set(err, ENOMEM, "state_dir");
    for (char *q = p + 1;; q++) {
        if (*q != '/' && *q != '\0')
            continue;
        char c = *q;
        *q = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
            return hearth_error_sys(err, "create state_dir %s", p);
        *q = c;
        if (c == '\0')
            break;
    }
    return 0;
}

/* SQLite creates a database 0644 less the umask, and its -wal and -shm
 * with the mode of the database file (fchmod'ed, whatever the umask): a
 * database made 0600 first keeps all of them private. The directory's
 * 0700 is not enough on its own: a bind mount of one of these files (or
 * a hard link) skips it. */
int sqlschema_private_files(const char *db_path, hearth_error_t *err)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        cleanup_free char *path = NULL;
        if (asprintf(&path, "%s%s", db_path, suffixes[i]) < 0)
            return hearth_error_set(err, ENOMEM, "state file");
        cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | (i == 0 ? O_CREAT : 0),
                                    0600);
        if (fd < 0 && errno == ENOENT && i > 0)
            continue;
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
            return hearth_error_sys(err, "state file %s", path);
        if (!S_ISREG(st.st_mode))
            return hearth_error_set(err, EINVAL, "state file %s: not a regular file", path);
        if ((st.st_mode & 077) != 0 && fchmod(fd, st.st_mode & 0700) < 0)
            return hearth_error_sys(err, "state file %s: make it private", path);
    }
    return 0;
}

static int exec_sql(sqlite3 *db, const char *label, const char *sql, hearth_error_t *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        hearth_error_set(err, 0, "%s: `%.60s`: %s", label, sql, msg ? msg : sqlite3_errstr(rc));
        if (err != NULL)
            err->code = rc == SQLITE_FULL ? ENOSPC : EIO;
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int sqlschema_version(sqlite3 *db, const char *label, int *version, hearth_error_t *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema_version'", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        *version = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE && rc != SQLITE_OK)
        return hearth_error_set(err, EIO, "%s: read schema_version: %s", label, sqlite3_errmsg(db));
    return 0;
}

int sqlschema_migrate(sqlite3 *db, const char *label, const char *path, const char *const *migrations, int n,
                      hearth_error_t *err)
{
    if (exec_sql(db, label, "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value)", err) < 0)
        return -1;
    int v;
    if (sqlschema_version(db, label, &v, err) < 0)
        return -1;
    if (v > n)
        return hearth_error_set(err, EPROTO, "%s: %s has schema version %d, newer than this hearth's %d", label, path,
                                v, n);
    for (; v < n; v++) {
        char bump[128];
        snprintf(bump, sizeof(bump),
                 "INSERT INTO meta (key, value) VALUES ('schema_version', %d)"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 v + 1);
        if (exec_sql(db, label, "BEGIN IMMEDIATE", err) < 0)
            return -1;
        if (exec_sql(db, label, migrations[v], err) < 0 || exec_sql(db, label, bump, err) < 0) {
            exec_sql(db, label, "ROLLBACK", NULL);
            return hearth_error_wrap(err, "migration to schema version %d", v + 1);
        }
        if (exec_sql(db, label, "COMMIT", err) < 0)
            return -1;
    }
    return 0;
}
