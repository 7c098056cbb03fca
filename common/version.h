#ifndef HEARTH_VERSION_H
#define HEARTH_VERSION_H
#define HEARTH_VERSION "0.1.0"
#endif
