/*
 * What the load generator's C clients (fanout.c, longpoll.c) share: the JSON
 * lines they speak to the orchestrator (main.mjs's), their clocks, and
 * percentiles by nearest rank, as meter.mjs computes them.
 */
#ifndef HUBBUB_LOADGEN_COMMON_H
#define HUBBUB_LOADGEN_COMMON_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* {"error": "..."} on stdout, then exit status 1. */
static void fail(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  printf("{\"error\": \"");
  for (const char *c = msg; *c; c++) {
    if (*c == '"' || *c == '\\') putchar('\\');
    putchar(*c >= ' ' ? *c : ' ');
  }
  printf("\"}\n");
  exit(1);
}

/* A mark, with this process's CPU time (it may have exited before the orchestrator reads /proc). */
static void mark(const char *name) {
  struct timespec cpu;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
  printf("{\"mark\": \"%s\", \"cpu_s\": %.6f}\n", name, cpu.tv_sec + cpu.tv_nsec / 1e9);
  fflush(stdout);
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The p-th percentile of sorted[0..count), by nearest rank (as meter.mjs). */
static double percentile(const double *sorted, long count, double p) {
  long i = (long)ceil(p / 100.0 * count) - 1;
  return sorted[i < 0 ? 0 : i >= count ? count - 1 : i];
}

#endif
