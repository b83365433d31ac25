/* Datagram reception in batches: recvmmsg(2), the GIL released.
 *
 * Receiver(fd, bufsize, vlen).recv(budget, cap) reads up to `budget`
 * datagrams from a non-blocking socket and returns them shaped for the
 * parser, exactly as collector.netio.PureReceiver does with recvfrom (the
 * specification):
 *
 *   (frames, runs, nbytes, empty, truncated, errno)
 *
 * frames: [(bytes, cut)] each datagram with its trailing LF/CR/NUL bytes
 *         removed; longer than `cap`: cut to `cap` (then stripped again),
 *         cut = True. Datagrams with nothing else are not in it.
 * runs:   [(index, ip)] frames[index:] came from `ip` (inet_ntop of the
 *         source address, no port), up to the next run; ip is None for a
 *         source that is not AF_INET/AF_INET6 (unix sockets).
 * nbytes: bytes received (as the kernel delivered them, before stripping).
 * empty:  datagrams with nothing but LF/CR/NUL (not in frames).
 * truncated: frames with cut = True.
 * errno:  0, or the error that ended the reading (EAGAIN is no error).
 *
 * Two ways to read:
 * - in the caller's thread (before start() and after stop()): recvmmsg
 *   after recvmmsg of at most `vlen`, the GIL released during each, until
 *   EAGAIN or the budget is spent;
 * - start(ring_bytes): a thread of its own (it never takes the GIL) waits
 *   on the socket and moves what arrives into a ring of `ring_bytes`, and
 *   makes fileno() (an eventfd) readable; recv() then takes from the ring.
 *   The kernel's receive work (half of a datagram's cost) runs beside the
 *   interpreter instead of in it. When the ring is full the thread stops
 *   reading, so the kernel's buffer fills and its drops are counted where
 *   they always are (/proc/net/udp). stop() ends the thread; what the
 *   ring holds is read first, then the socket directly again.
 *
 * A datagram longer than `bufsize` is cut by the kernel (MSG_TRUNC), as
 * recvfrom(bufsize) cuts it; bufsize > cap, so it is flagged `cut`.
 * The socket stays the caller's: the Receiver never closes it.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* One datagram in the ring: this header, the bytes, padding to 8. */
typedef struct {
    uint32_t len; /* RING_WRAP: the rest up to the end is unused, go on at 0 */
    uint16_t family;
    uint16_t pad;
    unsigned char addr[16];
} RecHead;

#define RING_WRAP UINT32_MAX
#define ALIGN8(n) (((n) + 7u) & ~(size_t)7u)

/* recvmmsg's arrays and buffers: one set for the caller's thread, one for
 * the reading thread. */
typedef struct {
    unsigned int vlen;
    size_t bufsize;
    char *buffers;                  /* vlen * bufsize */
    struct mmsghdr *msgs;           /* vlen */
    struct iovec *iovs;             /* vlen */
    struct sockaddr_storage *addrs; /* vlen */
} Batch;

typedef struct {
    /* set before the thread starts, then read-only */
    int fd;
    int efd;    /* eventfd: datagrams wait in the ring (the loop's reader) */
    int wakefd; /* eventfd: stop() wakes the thread's poll */
    char *data;
    size_t size;
    Batch batch; /* the thread's own */
    pthread_t thread;
    /* under mu */
    pthread_mutex_t mu;
    pthread_cond_t space;
    size_t head, tail, used; /* bytes: write at head, read at tail */
    int stop;
    int err;
    unsigned long long full; /* times the thread waited for room */
    /* Set by the thread as it ends: batch.msgs[left_from, left_to) were
     * received but found no room; recv() reads them after the ring. */
    int left_from, left_to;
    int joined; /* the thread has ended (set by the caller of stop, GIL held) */
} Ring;

typedef struct {
    PyObject_HEAD
    int fd;
    Batch batch;
    Ring *ring; /* while a thread reads (start() .. the end of stop()) */
    int stopped_ring; /* ring kept after stop() until drained */
    /* The last source seen (its address bytes) and its ip str: a run of
     * datagrams from one sender shares one str object. */
    unsigned char last_addr[16];
    int last_family;
    PyObject *last_ip;
} Receiver;

static int is_strip(unsigned char c) { return c == '\n' || c == '\r' || c == '\0'; }

static size_t rstrip_len(const char *p, size_t n) {
    while (n > 0 && is_strip((unsigned char)p[n - 1]))
        n--;
    return n;
}

/* -- recvmmsg's arrays ------------------------------------------------------ */

static int batch_alloc(Batch *b, unsigned int vlen, size_t bufsize) {
    /* malloc, not PyMem: the reading thread never holds the GIL. */
    b->vlen = vlen;
    b->bufsize = bufsize;
    b->buffers = malloc((size_t)vlen * bufsize);
    b->msgs = calloc(vlen, sizeof(struct mmsghdr));
    b->iovs = calloc(vlen, sizeof(struct iovec));
    b->addrs = calloc(vlen, sizeof(struct sockaddr_storage));
    return b->buffers && b->msgs && b->iovs && b->addrs ? 0 : -1;
}

static void batch_free(Batch *b) {
    free(b->buffers);
    free(b->msgs);
    free(b->iovs);
    free(b->addrs);
    memset(b, 0, sizeof *b);
}

/* recvmmsg of up to `want` (<= vlen) datagrams; its result and errno. */
static int batch_recv(Batch *b, int fd, unsigned int want) {
    for (unsigned int i = 0; i < want; i++) {
        b->iovs[i].iov_base = b->buffers + (size_t)i * b->bufsize;
        b->iovs[i].iov_len = b->bufsize;
        struct msghdr *h = &b->msgs[i].msg_hdr;
        h->msg_name = &b->addrs[i];
        h->msg_namelen = sizeof(struct sockaddr_storage);
        h->msg_iov = &b->iovs[i];
        h->msg_iovlen = 1;
        h->msg_control = NULL;
        h->msg_controllen = 0;
        h->msg_flags = 0;
        b->msgs[i].msg_len = 0;
    }
    return recvmmsg(fd, b->msgs, want, MSG_DONTWAIT, NULL);
}

/* The IP part of a source address: its family (AF_UNSPEC when it has
 * none) and up to 16 bytes into `out`. */
static int source_of(const struct sockaddr_storage *ss, socklen_t len, unsigned char out[16]) {
    int family = len >= sizeof(sa_family_t) ? ss->ss_family : AF_UNSPEC;
    if (family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        memcpy(out, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        return AF_INET;
    }
    if (family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        memcpy(out, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
        return AF_INET6;
    }
    return AF_UNSPEC;
}

/* -- shaping for the parser (GIL held) ---------------------------------------- */

typedef struct {
    PyObject *frames, *runs;
    long long nbytes;
    Py_ssize_t empty, truncated, count;
} Out;

/* The ip str of a source (borrowed from self->last_ip), Py_None for a
 * family without one, NULL on error. *changed: not the last one. */
static PyObject *source_ip(Receiver *self, int family, const unsigned char *addr, int *changed) {
    size_t n = family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
    if (self->last_ip != NULL && family == self->last_family &&
        (n == 0 || memcmp(addr, self->last_addr, n) == 0)) {
        *changed = 0;
        return self->last_ip;
    }
    PyObject *ip;
    if (n == 0) {
        ip = Py_NewRef(Py_None);
    } else {
        char text[INET6_ADDRSTRLEN];
        if (inet_ntop(family, addr, text, sizeof(text)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        ip = PyUnicode_FromString(text);
        if (ip == NULL)
            return NULL;
        memcpy(self->last_addr, addr, n);
    }
    Py_XSETREF(self->last_ip, ip);
    self->last_family = family;
    *changed = 1;
    return ip;
}

/* One datagram as received -> out (stripped, cut, its run). */
static int add_datagram(Receiver *self, Out *out, const char *p, size_t len, Py_ssize_t cap,
                        int family, const unsigned char *addr) {
    out->count++;
    out->nbytes += (long long)len;
    size_t n = rstrip_len(p, len);
    if (n == 0) {
        out->empty++;
        return 0;
    }
    int cut = n > (size_t)cap;
    if (cut) {
        n = rstrip_len(p, (size_t)cap);
        out->truncated++;
    }
    int changed;
    PyObject *ip = source_ip(self, family, addr, &changed);
    if (ip == NULL)
        return -1;
    if (changed) {
        PyObject *run = Py_BuildValue("(nO)", PyList_GET_SIZE(out->frames), ip);
        if (run == NULL || PyList_Append(out->runs, run) < 0) {
            Py_XDECREF(run);
            return -1;
        }
        Py_DECREF(run);
    }
    PyObject *data = PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
    if (data == NULL)
        return -1;
    PyObject *frame = PyTuple_New(2);
    if (frame == NULL) {
        Py_DECREF(data);
        return -1;
    }
    PyTuple_SET_ITEM(frame, 0, data);
    PyTuple_SET_ITEM(frame, 1, Py_NewRef(cut ? Py_True : Py_False));
    int failed = PyList_Append(out->frames, frame);
    Py_DECREF(frame);
    return failed;
}

/* -- the reading thread --------------------------------------------------------- */

static void notify(int efd) {
    uint64_t one = 1;
    ssize_t w = write(efd, &one, sizeof one);
    (void)w; /* EAGAIN: the counter is already huge, the reader is woken anyway */
}

/* Room for `need` contiguous bytes (under mu), or NULL. */
static char *ring_reserve(Ring *r, size_t need) {
    if (r->used == 0)
        r->head = r->tail = 0; /* empty: start over, the most room in one piece */
    if (r->used < r->size && r->head >= r->tail) {
        /* free: [head, size) and [0, tail) */
        size_t end = r->size - r->head;
        if (need <= end)
            return r->data + r->head;
        if (need <= r->tail) {
            ((RecHead *)(r->data + r->head))->len = RING_WRAP; /* end >= 8: all is 8-aligned */
            r->used += end;
            r->head = 0;
            return r->data;
        }
        return NULL;
    }
    if (r->used < r->size && need <= r->tail - r->head) /* head < tail: free [head, tail) */
        return r->data + r->head;
    return NULL;
}

static void ring_commit(Ring *r, size_t need) {
    r->head += need;
    if (r->head == r->size)
        r->head = 0;
    r->used += need;
}

static void *ring_thread(void *arg) {
    Ring *r = arg;
    Batch *b = &r->batch;
    for (;;) {
        struct pollfd fds[2] = {{r->fd, POLLIN, 0}, {r->wakefd, POLLIN, 0}};
        int pr = poll(fds, 2, -1);
        pthread_mutex_lock(&r->mu);
        int stop = r->stop;
        pthread_mutex_unlock(&r->mu);
        if (stop)
            break;
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[0].revents & POLLNVAL) {
            pthread_mutex_lock(&r->mu);
            r->err = EBADF;
            pthread_mutex_unlock(&r->mu);
            notify(r->efd);
            break;
        }
        int got = batch_recv(b, r->fd, b->vlen);
        if (got < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR)
                continue;
            pthread_mutex_lock(&r->mu);
            r->err = e;
            pthread_mutex_unlock(&r->mu);
            notify(r->efd);
            if (e == EBADF || e == ENOTSOCK || e == EINVAL || e == EFAULT)
                break;
            continue;
        }
        pthread_mutex_lock(&r->mu);
        /* The loop is told when the ring stops being empty; while it holds
         * datagrams, recv() tells itself (it re-arms the eventfd). */
        int was_empty = r->used == 0;
        for (int i = 0; i < got; i++) {
            size_t len = b->msgs[i].msg_len;
            if (len > b->bufsize)
                len = b->bufsize;
            size_t need = ALIGN8(sizeof(RecHead) + len);
            char *dst = ring_reserve(r, need);
            while (dst == NULL && !r->stop) {
                r->full++;
                pthread_mutex_unlock(&r->mu);
                notify(r->efd);
                pthread_mutex_lock(&r->mu);
                if ((dst = ring_reserve(r, need)) != NULL || r->stop)
                    break;
                pthread_cond_wait(&r->space, &r->mu);
                dst = ring_reserve(r, need);
            }
            if (dst == NULL) { /* stopping: recv() reads the rest from our batch */
                r->left_from = i;
                r->left_to = got;
                break;
            }
            if (r->used == 0)
                was_empty = 1; /* the loop took all while we waited for room */
            RecHead *h = (RecHead *)dst;
            h->len = (uint32_t)len;
            h->family = (uint16_t)source_of(&b->addrs[i], b->msgs[i].msg_hdr.msg_namelen, h->addr);
            h->pad = 0;
            memcpy(dst + sizeof(RecHead), b->buffers + (size_t)i * b->bufsize, len);
            ring_commit(r, need);
        }
        pthread_mutex_unlock(&r->mu);
        if (was_empty)
            notify(r->efd);
    }
    return NULL;
}

static void ring_free(Ring *r) {
    if (r == NULL)
        return;
    if (r->efd >= 0)
        close(r->efd);
    if (r->wakefd >= 0)
        close(r->wakefd);
    batch_free(&r->batch);
    free(r->data);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->space);
    free(r);
}

/* Tell the thread to end and wait for it (the GIL released meanwhile when
 * `release`). Idempotent. */
static void ring_stop(Ring *r, int release) {
    pthread_mutex_lock(&r->mu);
    int was = r->stop;
    r->stop = 1;
    pthread_cond_broadcast(&r->space);
    pthread_mutex_unlock(&r->mu);
    if (was)
        return;
    notify(r->wakefd);
    if (release) {
        Py_BEGIN_ALLOW_THREADS
        pthread_join(r->thread, NULL);
        Py_END_ALLOW_THREADS
    } else {
        pthread_join(r->thread, NULL);
    }
    r->joined = 1; /* from here on its batch and the socket are the caller's */
}

/* Up to `budget` datagrams from the ring into out; *left: bytes still in it. */
static int ring_take(Receiver *self, Out *out, Py_ssize_t budget, Py_ssize_t cap, int *err,
                     size_t *left) {
    Ring *r = self->ring;
    pthread_mutex_lock(&r->mu);
    size_t avail = r->used, t = r->tail;
    *err = r->err;
    r->err = 0;
    pthread_mutex_unlock(&r->mu);
    /* [tail, tail + avail) is ours to read: the thread writes elsewhere. */
    size_t done = 0;
    int failed = 0;
    while (done < avail && out->count < budget) {
        if (t == r->size)
            t = 0;
        RecHead *h = (RecHead *)(r->data + t);
        if (h->len == RING_WRAP) {
            done += r->size - t;
            t = 0;
            continue;
        }
        size_t need = ALIGN8(sizeof(RecHead) + h->len);
        if (add_datagram(self, out, r->data + t + sizeof(RecHead), h->len, cap, h->family,
                         h->addr) < 0) {
            failed = 1;
            break;
        }
        done += need;
        t += need;
    }
    if (t == r->size)
        t = 0;
    pthread_mutex_lock(&r->mu);
    if (done > 0) { /* (with nothing taken, the thread may have restarted at 0 meanwhile) */
        r->tail = t;
        r->used -= done;
        pthread_cond_signal(&r->space);
    }
    *left = r->used;
    pthread_mutex_unlock(&r->mu);
    return failed ? -1 : 0;
}

/* -- the type ------------------------------------------------------------------- */

static void Receiver_dealloc(Receiver *self) {
    if (self->ring != NULL) {
        ring_stop(self->ring, 0); /* the thread never takes the GIL: no deadlock */
        ring_free(self->ring);
    }
    batch_free(&self->batch);
    Py_XDECREF(self->last_ip);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Receiver_init(Receiver *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"fd", "bufsize", "vlen", NULL};
    int fd;
    Py_ssize_t bufsize;
    int vlen = 64;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "in|i", kwlist, &fd, &bufsize, &vlen))
        return -1;
    if (fd < 0 || bufsize < 1 || bufsize > (1 << 24) || vlen < 1 || vlen > 1024) {
        PyErr_SetString(PyExc_ValueError,
                        "Receiver: fd >= 0, 1 <= bufsize <= 16 MiB, 1 <= vlen <= 1024");
        return -1;
    }
    if (self->batch.buffers != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Receiver is already initialised");
        return -1;
    }
    self->fd = fd;
    if (batch_alloc(&self->batch, (unsigned int)vlen, (size_t)bufsize) < 0) {
        batch_free(&self->batch);
        PyErr_NoMemory();
        return -1;
    }
    self->last_family = -1;
    return 0;
}

static PyObject *Receiver_start(Receiver *self, PyObject *arg) {
    if (self->batch.buffers == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Receiver is not initialised");
        return NULL;
    }
    if (self->ring != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Receiver was started already");
        return NULL;
    }
    Py_ssize_t size = PyLong_AsSsize_t(arg);
    if (size == -1 && PyErr_Occurred())
        return NULL;
    /* Room for two of the largest datagrams at least; 8-aligned. */
    size_t least = 2 * ALIGN8(sizeof(RecHead) + self->batch.bufsize);
    size_t want = size < 0 || (size_t)size < least ? least : ALIGN8((size_t)size);
    Ring *r = calloc(1, sizeof(Ring));
    if (r == NULL)
        return PyErr_NoMemory();
    r->fd = self->fd;
    r->efd = r->wakefd = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->space, NULL);
    r->size = want;
    r->data = malloc(want);
    if (r->data == NULL || batch_alloc(&r->batch, self->batch.vlen, self->batch.bufsize) < 0) {
        ring_free(r);
        return PyErr_NoMemory();
    }
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    r->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->efd < 0 || r->wakefd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        ring_free(r);
        return NULL;
    }
    /* Signals stay with the interpreter's thread: the new one blocks them all. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&r->thread, NULL, ring_thread, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        errno = e;
        PyErr_SetFromErrno(PyExc_OSError);
        ring_free(r);
        return NULL;
    }
    self->ring = r;
    return PyLong_FromLong(r->efd);
}

static PyObject *Receiver_stop(Receiver *self, PyObject *unused) {
    if (self->ring != NULL)
        ring_stop(self->ring, 1);
    Py_RETURN_NONE;
}

static PyObject *Receiver_recv(Receiver *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "recv(budget, cap) takes 2 arguments");
        return NULL;
    }
    if (self->batch.buffers == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Receiver is not initialised");
        return NULL;
    }
    Py_ssize_t budget = PyLong_AsSsize_t(args[0]);
    if (budget == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t cap = PyLong_AsSsize_t(args[1]);
    if (cap == -1 && PyErr_Occurred())
        return NULL;
    if (cap < 0) {
        PyErr_SetString(PyExc_ValueError, "cap must be >= 0");
        return NULL;
    }
    Out out = {PyList_New(0), PyList_New(0), 0, 0, 0, 0};
    if (out.frames == NULL || out.runs == NULL)
        goto error;
    /* A new batch: its first frame always starts a run. */
    Py_CLEAR(self->last_ip);
    self->last_family = -1;
    int err = 0;
    Ring *r = self->ring;
    int stopped = 0;
    if (r != NULL) {
        uint64_t count;
        ssize_t rd = read(r->efd, &count, sizeof count); /* reset: we read now */
        (void)rd;
        size_t left;
        if (ring_take(self, &out, budget, cap, &err, &left) < 0)
            goto error;
        stopped = r->joined;
        if (left > 0 && !stopped)
            notify(r->efd); /* over budget: call again on the next iteration */
        if (!stopped || left > 0 || err)
            goto done;
        /* Stopped and drained: what the thread received but could not
         * store (the thread has ended: its batch is ours), then the socket. */
        Batch *tb = &r->batch;
        while (r->left_from < r->left_to && out.count < budget) {
            int i = r->left_from++;
            size_t len = tb->msgs[i].msg_len;
            if (len > tb->bufsize)
                len = tb->bufsize;
            unsigned char addr[16];
            int family = source_of(&tb->addrs[i], tb->msgs[i].msg_hdr.msg_namelen, addr);
            if (add_datagram(self, &out, tb->buffers + (size_t)i * tb->bufsize, len, cap, family,
                             addr) < 0)
                goto error;
        }
    }
    Batch *b = &self->batch;
    while (out.count < budget) {
        Py_ssize_t rest = budget - out.count;
        unsigned int want = rest < (Py_ssize_t)b->vlen ? (unsigned int)rest : b->vlen;
        int got;
        Py_BEGIN_ALLOW_THREADS
        got = batch_recv(b, self->fd, want);
        Py_END_ALLOW_THREADS
        if (got < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    goto error;
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                err = errno;
            break;
        }
        for (int i = 0; i < got; i++) {
            size_t len = b->msgs[i].msg_len;
            if (len > b->bufsize) /* cannot happen: recvmmsg reports what it copied */
                len = b->bufsize;
            unsigned char addr[16];
            int family = source_of(&b->addrs[i], b->msgs[i].msg_hdr.msg_namelen, addr);
            if (add_datagram(self, &out, b->buffers + (size_t)i * b->bufsize, len, cap, family,
                             addr) < 0)
                goto error;
        }
        if ((unsigned int)got < want)
            break; /* the kernel had no more: the next call would say EAGAIN */
    }
done:
    Py_CLEAR(self->last_ip);
    return Py_BuildValue("(NNLnni)", out.frames, out.runs, out.nbytes, out.empty, out.truncated,
                         err);
error:
    Py_CLEAR(self->last_ip);
    Py_XDECREF(out.frames);
    Py_XDECREF(out.runs);
    return NULL;
}

static PyObject *Receiver_fileno(Receiver *self, PyObject *unused) {
    /* What to wait on: the ring's eventfd while a thread reads, else the socket. */
    if (self->ring != NULL && !self->ring->joined)
        return PyLong_FromLong(self->ring->efd);
    return PyLong_FromLong(self->fd);
}

static PyObject *Receiver_ring_full(Receiver *self, void *closure) {
    (void)closure;
    unsigned long long n = 0;
    if (self->ring != NULL) {
        pthread_mutex_lock(&self->ring->mu);
        n = self->ring->full;
        pthread_mutex_unlock(&self->ring->mu);
    }
    return PyLong_FromUnsignedLongLong(n);
}

static PyMethodDef Receiver_methods[] = {
    {"recv", (PyCFunction)(void (*)(void))Receiver_recv, METH_FASTCALL,
     "recv(budget, cap) -> (frames, runs, nbytes, empty, truncated, errno)\n\n"
     "Up to `budget` datagrams: from the ring while a thread reads, else from the socket."},
    {"start", (PyCFunction)Receiver_start, METH_O,
     "start(ring_bytes) -> int: a thread reads the socket into a ring of ring_bytes; "
     "returns the eventfd that is readable while datagrams wait there."},
    {"stop", (PyCFunction)Receiver_stop, METH_NOARGS,
     "stop(): end the reading thread; recv() reads the ring, then the socket."},
    {"fileno", (PyCFunction)Receiver_fileno, METH_NOARGS,
     "fileno() -> int: the descriptor to wait on for recv()."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Receiver_getset[] = {
    {"ring_full", (getter)Receiver_ring_full, NULL,
     "times the reading thread found the ring full and waited", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ReceiverType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "collector._netio.Receiver",
    .tp_basicsize = sizeof(Receiver),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Receiver(fd, bufsize, vlen=64): batches of datagrams from a socket (recvmmsg).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Receiver_init,
    .tp_dealloc = (destructor)Receiver_dealloc,
    .tp_methods = Receiver_methods,
    .tp_getset = Receiver_getset,
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "collector._netio",
    "Datagram reception in batches with recvmmsg, in the caller's thread or one of its own.",
    -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__netio(void) {
    /* COLLECTOR_PURE=1 forces the pure path, as for collector._native. */
    const char *pure = getenv("COLLECTOR_PURE");
    if (pure != NULL && pure[0] != '\0' && strcmp(pure, "0") != 0) {
        PyErr_SetString(PyExc_ImportError, "COLLECTOR_PURE is set");
        return NULL;
    }
    if (PyType_Ready(&ReceiverType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Receiver", (PyObject *)&ReceiverType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
