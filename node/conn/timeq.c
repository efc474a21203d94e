/* SPDX-License-Identifier: Apache-2.0 */
/* Timeout queues: see timeq.h. */
#include "node/conn/timeq.h"

#include "core/alloc.h"

struct sh_timeq_s {
    uint64_t duration;
    sh_link_t list;
};

static void arm(sh_timers_t *t);

static void tick(uv_timer_t *h)
{
    sh_timers_t *t = container_of(h, sh_timers_t, timer);
    uint64_t now = uv_now(h->loop);
    t->armed = UINT64_MAX;
    for (size_t i = 0; i < t->nqs; i++) {
        sh_link_t *head = &t->qs[i]->list;
        while (!sh_list_empty(head)) {
            sh_timeq_entry_t *e = container_of(head->next, sh_timeq_entry_t, link);
            if (e->deadline > now)
                break;
            sh_list_remove(&e->link);
            t->expire(e);
        }
    }
    arm(t);
}

static void arm(sh_timers_t *t)
{
    uint64_t min = UINT64_MAX;
    for (size_t i = 0; i < t->nqs; i++) {
        sh_link_t *head = &t->qs[i]->list;
        if (!sh_list_empty(head)) {
            sh_timeq_entry_t *e = container_of(head->next, sh_timeq_entry_t, link);
            if (e->deadline < min)
                min = e->deadline;
        }
    }
    if (min == t->armed)
        return;
    t->armed = min;
    if (min == UINT64_MAX) {
        uv_timer_stop(&t->timer);
        return;
    }
    uint64_t now = uv_now(t->timer.loop);
    uv_timer_start(&t->timer, tick, min > now ? min - now : 0, 0);
}

void sh_timers_init(sh_timers_t *t, uv_loop_t *loop, void (*expire)(sh_timeq_entry_t *e))
{
    uv_timer_init(loop, &t->timer);
    t->armed = UINT64_MAX;
    t->qs = NULL;
    t->nqs = 0;
    t->expire = expire;
}

void sh_timeq_entry_init(sh_timeq_entry_t *e)
{
    sh_list_init(&e->link);
    e->deadline = 0;
}

static sh_timeq_t *queue_of(sh_timers_t *t, uint64_t ms)
{
    sh_timeq_t *q = NULL;
    for (size_t i = 0; i < t->nqs; i++)
        if (t->qs[i]->duration == ms)
            q = t->qs[i];
    if (q == NULL) {
        /* durations come from the configuration: a handful. Each queue is
         * its own allocation, so growing the array never moves a list
         * head that entries point at. */
        t->qs = sh_realloc(t->qs, (t->nqs + 1) * sizeof(*t->qs));
        q = sh_new(sh_timeq_t);
        q->duration = ms;
        sh_list_init(&q->list);
        t->qs[t->nqs++] = q;
    }
    return q;
}

void sh_timers_add(sh_timers_t *t, sh_timeq_entry_t *e, uint64_t ms)
{
    sh_list_remove(&e->link);
    sh_timeq_t *q = queue_of(t, ms);
    e->deadline = uv_now(t->timer.loop) + ms;
    /* append: the queue stays sorted since its duration is fixed */
    e->link.prev = q->list.prev;
    e->link.next = &q->list;
    q->list.prev->next = &e->link;
    q->list.prev = &e->link;
    if (e->deadline < t->armed)
        arm(t);
}

void sh_timers_add_at(sh_timers_t *t, sh_timeq_entry_t *e, uint64_t ms, uint64_t deadline)
{
    sh_list_remove(&e->link);
    sh_timeq_t *q = queue_of(t, ms);
    uint64_t now = uv_now(t->timer.loop);
    e->deadline = deadline < now + ms ? deadline : now + ms;
    /* insert in order, from the tail: the entries added since the first
     * arming of e (those with a later deadline) are walked over */
    sh_link_t *at = q->list.prev;
    while (at != &q->list && container_of(at, sh_timeq_entry_t, link)->deadline > e->deadline)
        at = at->prev;
    e->link.prev = at;
    e->link.next = at->next;
    at->next->prev = &e->link;
    at->next = &e->link;
    if (e->deadline < t->armed)
        arm(t);
}

int sh_timers_armed_at(const sh_timeq_entry_t *e, uint64_t deadline)
{
    return e->link.next != &e->link && e->deadline == deadline;
}

void sh_timers_remove(sh_timeq_entry_t *e)
{
    /* the timer may stay armed for a now-later deadline: tick() re-arms */
    sh_list_remove(&e->link);
}

void sh_timers_close(sh_timers_t *t)
{
    for (size_t i = 0; i < t->nqs; i++)
        sh_free(t->qs[i]);
    sh_free(t->qs);
    t->qs = NULL;
    t->nqs = 0;
    if (!uv_is_closing((uv_handle_t *)&t->timer))
        uv_close((uv_handle_t *)&t->timer, NULL);
}
