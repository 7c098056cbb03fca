/* Backend detection and helpers shared by cgroup_v1.c and cgroup_v2.c. */
#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void sbx_cg_init(sbx_cgroup_t *cg, sbx_cgroups_t *cgs)
{
    memset(cg, 0, sizeof(*cg));
    cg->cgs = cgs;
    for (int i = 0; i < SBX_CG_MAX_HIER; i++)
        cg->dirfd[i] = -1;
    cg->cpu_fd = -1;
}

void sbx_cg_close(sbx_cgroup_t *cg)
{
    for (int i = 0; i < SBX_CG_MAX_HIER; i++) {
        if (cg->dirfd[i] >= 0)
            close(cg->dirfd[i]);
        cg->dirfd[i] = -1;
    }
    if (cg->cpu_fd >= 0)
        close(cg->cpu_fd);
    cg->cpu_fd = -1;
}

static int parse_u64(const char *buf, uint64_t *out)
{
    if (strncmp(buf, "max", 3) == 0) {
        *out = UINT64_MAX;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno != 0 || end == buf) {
        errno = EINVAL;
        return -1;
    }
    *out = v;
    return 0;
}

int sbx_cg_read_u64(int dirfd, const char *file, uint64_t *out)
{
    char buf[64];
    if (read_file_at(dirfd, file, buf, sizeof(buf)) < 0)
        return -1;
    return parse_u64(buf, out);
}

static void parse_key(char *buf, const char *key, uint64_t *out)
{
    size_t klen = strlen(key);
    for (char *line = buf; line != NULL && *line;) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
            *out = strtoull(line + klen + 1, NULL, 10);
            return;
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    *out = 0; /* absent keys read as zero: older kernels lack some counters */
}

int sbx_cg_read_key(int dirfd, const char *file, const char *key, uint64_t *out)
{
    char buf[4096];
    if (read_file_at(dirfd, file, buf, sizeof(buf)) < 0)
        return -1;
    parse_key(buf, key, out);
    return 0;
}

int sbx_cg_read_cpu(sbx_cgroup_t *cg, int dirfd, const char *file, const char *key, uint64_t *out)
{
    if (cg->cpu_fd < 0 && (cg->cpu_fd = openat(dirfd, file, O_RDONLY | O_CLOEXEC)) < 0)
        return -1;
    /* A cgroup file is generated afresh by each read from offset 0; it
     * is small enough for one read (cpu.stat: a few hundred bytes). */
    char buf[1024];
    ssize_t n = pread(cg->cpu_fd, buf, sizeof(buf) - 1, 0);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    if (key == NULL)
        return parse_u64(buf, out);
    parse_key(buf, key, out);
    return 0;
}

int sbx_cg_rmtree(int parent_dirfd, const char *name)
{
    int fd = openat(parent_dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_type != DT_DIR || de->d_name[0] == '.')
            continue;
        sbx_cg_rmtree(dirfd(d), de->d_name);
    }
    closedir(d);
    if (unlinkat(parent_dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return -1;
    return 0;
}

/* Does the comma-separated list contain word? */
static bool has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; p && *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && strncmp(p, word, n) == 0)
            return true;
        p = c ? c + 1 : NULL;
    }
    return false;
}

int sbx_cgroups_detect(sbx_cgroups_t *cgs, const char *root, hearth_error_t *err)
{
    memset(cgs, 0, sizeof(*cgs));
    for (int i = 0; i < SBX_CG_MAX_HIER; i++)
        cgs->hier_dirfd[i] = -1;
    if (snprintf(cgs->root, sizeof(cgs->root), "%s", root) >= (int)sizeof(cgs->root) || root[0] == '\0' ||
        root[0] == '/' || strstr(root, "..") != NULL)
        return hearth_error_set(err, 0, "cgroup_root `%s`: must be a relative path without `..`", root);

    cleanup_fclose FILE *f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL)
        return hearth_error_sys(err, "open /proc/self/mountinfo");

    char v2_mount[256] = "";
    /* v1 controllers we need, and the mount point that offers each. */
    static const char *const wanted[] = {"cpu", "cpuacct", "memory", "pids", "freezer"};
    char v1_mount[5][256] = {{0}};
    char v1_opts[5][64] = {{0}};

    char line[4096];
    while (fgets(line, sizeof(line), f) != NULL) {
        char mnt[1024], fstype[64], super[1024];
        char *sep = strstr(line, " - ");
        if (sep == NULL)
            continue;
        if (sscanf(line, "%*d %*d %*s %*s %1023s", mnt) != 1)
            continue;
        if (sscanf(sep + 3, "%63s %*s %1023s", fstype, super) != 2)
            continue;
        if (strcmp(fstype, "cgroup2") == 0 && v2_mount[0] == '\0' && strlen(mnt) < sizeof(v2_mount)) {
            snprintf(v2_mount, sizeof(v2_mount), "%s", mnt);
        } else if (strcmp(fstype, "cgroup") == 0 && strlen(mnt) < 200) {
            for (int i = 0; i < 5; i++) {
                if (v1_mount[i][0] == '\0' && has_word(super, wanted[i])) {
                    snprintf(v1_mount[i], sizeof(v1_mount[i]), "%s", mnt);
                    /* Keep only the controller names of the super options. */
                    char ctrls[64] = "";
                    for (int j = 0; j < 5; j++) {
                        if (has_word(super, wanted[j])) {
                            size_t l = strlen(ctrls);
                            snprintf(ctrls + l, sizeof(ctrls) - l, "%s%s", l ? "," : "", wanted[j]);
                        }
                    }
                    snprintf(v1_opts[i], sizeof(v1_opts[i]), "%s", ctrls);
                }
            }
        }
    }

    if (v2_mount[0] != '\0') {
        char path[300], ctrl[512];
        snprintf(path, sizeof(path), "%s/cgroup.controllers", v2_mount);
        if (read_file_at(AT_FDCWD, path, ctrl, sizeof(ctrl)) >= 0) {
            char *nl = strchr(ctrl, '\n');
            if (nl)
                *nl = '\0';
            for (char *p = ctrl; *p; p++)
                if (*p == ' ')
                    *p = ',';
            if (has_word(ctrl, "memory") && has_word(ctrl, "pids") && has_word(ctrl, "cpu")) {
                cgs->ops = &sbx_cgroup_v2_ops;
                cgs->n_hier = 1;
                snprintf(cgs->hier_path[0], sizeof(cgs->hier_path[0]), "%s/%s", v2_mount, root);
                snprintf(cgs->hier_ctrl[0], sizeof(cgs->hier_ctrl[0]), "%s", "cpu,memory,pids");
                return 0;
            }
        }
    }

    for (int i = 0; i < 5; i++) {
        if (v1_mount[i][0] == '\0')
            return hearth_error_set(err, 0,
                                    "no usable cgroup hierarchy: cgroup2 lacks cpu/memory/pids and no v1 "
                                    "`%s` hierarchy is mounted",
                                    wanted[i]);
        bool seen = false;
        for (int j = 0; j < cgs->n_hier; j++)
            if (strncmp(cgs->hier_path[j], v1_mount[i], strlen(v1_mount[i])) == 0 &&
                cgs->hier_path[j][strlen(v1_mount[i])] == '/')
                seen = true;
        if (seen)
            continue;
        snprintf(cgs->hier_path[cgs->n_hier], sizeof(cgs->hier_path[0]), "%s/%s", v1_mount[i], root);
        snprintf(cgs->hier_ctrl[cgs->n_hier], sizeof(cgs->hier_ctrl[0]), "%s", v1_opts[i]);
        cgs->n_hier++;
    }
    cgs->ops = &sbx_cgroup_v1_ops;
    return 0;
}
