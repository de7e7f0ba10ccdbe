/* Clients: a strict-mode id for each open WebSocket, found by that id (messages from the
 * pipe name their recipient by it) or by connection id (events name the connection).
 *
 * Why ids of our own rather than the library's wss_id? gwsocket's header has 32 bits
 * for the client, a wss_id has 53. Ids are handed out from 1 upwards and not reused
 * while wspipe runs, so a message for a client that left cannot reach a newcomer.
 *
 * Two small open-addressing tables with linear probing and backward-shift deletion,
 * one per key; both point at the same struct client. */
#include "wspipe.h"

#include <stdlib.h>

static uint64_t table_key(const struct table *t, const struct client *c) {
  return t->by_id ? c->id : c->conn;
}

static size_t table_hash(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  return (size_t) k;
}

static struct client *table_find(const struct table *t, uint64_t key) {
  if (!t->slot) return NULL;
  for (size_t i = table_hash(key) & t->mask; t->slot[i]; i = (i + 1) & t->mask) {
    if (table_key(t, t->slot[i]) == key) return t->slot[i];
  }
  return NULL;
}

static void table_put(struct table *t, struct client *c);

static void table_grow(struct table *t) {
  size_t old_cap = t->slot ? t->mask + 1 : 0, cap = old_cap ? old_cap * 2 : 64;
  struct client **old = t->slot;
  t->slot = calloc(cap, sizeof *t->slot);
  if (!t->slot) {
    logmsg("out of memory");
    exit(1);
  }
  t->mask = cap - 1;
  t->count = 0;
  for (size_t i = 0; i < old_cap; i++) {
    if (old[i]) table_put(t, old[i]);
  }
  free(old);
}

static void table_put(struct table *t, struct client *c) {
  if (!t->slot || (t->count + 1) * 2 > t->mask + 1) table_grow(t);
  size_t i = table_hash(table_key(t, c)) & t->mask;
  while (t->slot[i]) i = (i + 1) & t->mask;
  t->slot[i] = c;
  t->count++;
}

static void table_remove(struct table *t, uint64_t key) {
  if (!t->slot) return;
  size_t i = table_hash(key) & t->mask;
  while (t->slot[i] && table_key(t, t->slot[i]) != key) i = (i + 1) & t->mask;
  if (!t->slot[i]) return;
  t->slot[i] = NULL;
  t->count--;
  /* Backward shift: move later entries of the run into the hole when their home slot
   * does not lie cyclically in (hole, j]. */
  for (size_t j = (i + 1) & t->mask; t->slot[j]; j = (j + 1) & t->mask) {
    size_t home = table_hash(table_key(t, t->slot[j])) & t->mask;
    bool stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      t->slot[i] = t->slot[j];
      t->slot[j] = NULL;
      i = j;
    }
  }
}

static uint32_t new_client_id(struct app *a) {
  for (;;) {
    uint32_t id = a->next_id++;
    if (a->next_id == 0) a->next_id = 1; /* wrapped after 4 billion clients */
    if (id != 0 && !table_find(&a->by_id, id)) return id;
  }
}

/* A new client for the connection, with the next id; NULL when out of memory. */
struct client *client_add(struct app *a, wss_id conn) {
  struct client *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->conn = conn;
  c->id = new_client_id(a);
  table_put(&a->by_conn, c);
  table_put(&a->by_id, c);
  return c;
}

struct client *client_by_conn(const struct app *a, wss_id conn) {
  return table_find(&a->by_conn, conn);
}

struct client *client_by_id(const struct app *a, uint32_t id) {
  return table_find(&a->by_id, id);
}

/* Iterates over the open clients, in no particular order:
 *   size_t i = 0; for (struct client *c; (c = client_next(a, &i));) ...
 * The tables must not change during the walk. */
struct client *client_next(const struct app *a, size_t *i) {
  const struct table *t = &a->by_conn;
  for (; t->slot && *i <= t->mask; (*i)++) {
    if (t->slot[*i]) return t->slot[(*i)++];
  }
  return NULL;
}

void client_remove(struct app *a, struct client *c) {
  table_remove(&a->by_conn, c->conn);
  table_remove(&a->by_id, c->id);
  free(c);
}

void clients_free(struct app *a) {
  size_t i = 0;
  for (struct client *c; (c = client_next(a, &i));) free(c);
  free(a->by_conn.slot);
  free(a->by_id.slot);
  a->by_conn = (struct table){0};
  a->by_id = (struct table){.by_id = true};
}
