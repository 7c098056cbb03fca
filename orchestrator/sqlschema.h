/* What the SQLite databases of hearthd share: their state directory and
 * their schema versioning (a `meta` table and a list of migrations, each
 * applied in its own transaction). */
#ifndef HEARTH_SQLSCHEMA_H
#define HEARTH_SQLSCHEMA_H

#include <sqlite3.h>

#include "../common/util.h"

/* mkdir -p with mode 0700 for the directories it creates: the databases
 * hold every tenant's specs, usage and payloads. */
int sqlschema_make_dirs(const char *path, hearth_error_t *err);
/* Create the database file db_path 0600 if missing, before SQLite opens
 * it, and make it and its -wal, -shm and -journal files 0600 if they
 * exist with wider modes (left by an older hearth). */
int sqlschema_private_files(const char *db_path, hearth_error_t *err);
/* The schema version recorded in db (0 before the first migration). */
int sqlschema_version(sqlite3 *db, const char *label, int *version, hearth_error_t *err);
/* Bring db (label names it in errors, path too) to schema version n by
 * applying migrations[v..n-1]; refuse a database newer than n. */
int sqlschema_migrate(sqlite3 *db, const char *label, const char *path, const char *const *migrations, int n,
                      hearth_error_t *err);

#endif
