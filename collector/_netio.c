/* Datagram reception in batches: recvmmsg(2) into buffers held by a
 * Receiver, the GIL released during the system call.
 *
 * Receiver(fd, bufsize, vlen).recv(budget, cap) reads up to `budget`
 * datagrams from a non-blocking socket, recvmmsg after recvmmsg of at most
 * `vlen` each, until the kernel has none left (EAGAIN) or the budget is
 * spent, and returns them shaped for the parser, exactly as
 * collector.netio.PureReceiver does with recvfrom (the specification):
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
 * A datagram longer than `bufsize` is cut by the kernel (MSG_TRUNC), as
 * recvfrom(bufsize) cuts it; bufsize > cap, so it is flagged `cut`.
 * The file descriptor stays the caller's: the Receiver never closes it.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct {
    PyObject_HEAD
    int fd;
    unsigned int vlen;
    size_t bufsize;
    char *buffers;              /* vlen * bufsize */
    struct mmsghdr *msgs;       /* vlen */
    struct iovec *iovs;         /* vlen */
    struct sockaddr_storage *addrs; /* vlen */
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

static void Receiver_dealloc(Receiver *self) {
    PyMem_Free(self->buffers);
    PyMem_Free(self->msgs);
    PyMem_Free(self->iovs);
    PyMem_Free(self->addrs);
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
    if (self->buffers != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Receiver is already initialised");
        return -1;
    }
    self->fd = fd;
    self->vlen = (unsigned int)vlen;
    self->bufsize = (size_t)bufsize;
    self->buffers = PyMem_Malloc((size_t)vlen * (size_t)bufsize);
    self->msgs = PyMem_Calloc((size_t)vlen, sizeof(struct mmsghdr));
    self->iovs = PyMem_Calloc((size_t)vlen, sizeof(struct iovec));
    self->addrs = PyMem_Calloc((size_t)vlen, sizeof(struct sockaddr_storage));
    if (self->buffers == NULL || self->msgs == NULL || self->iovs == NULL ||
        self->addrs == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->last_family = -1;
    return 0;
}

/* The ip str of a source address (borrowed from self->last_ip), Py_None
 * for a family without one, NULL on error. *changed: not the last one. */
static PyObject *source_ip(Receiver *self, const struct sockaddr_storage *ss, socklen_t len,
                           int *changed) {
    const void *bytes = NULL;
    size_t n = 0;
    int family = len >= sizeof(sa_family_t) ? ss->ss_family : AF_UNSPEC;
    if (family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        bytes = &((const struct sockaddr_in *)ss)->sin_addr;
        n = 4;
    } else if (family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        bytes = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        n = 16;
    } else {
        family = AF_UNSPEC;
    }
    if (self->last_ip != NULL && family == self->last_family &&
        (n == 0 || memcmp(bytes, self->last_addr, n) == 0)) {
        *changed = 0;
        return self->last_ip;
    }
    PyObject *ip;
    if (n == 0) {
        ip = Py_NewRef(Py_None);
    } else {
        char text[INET6_ADDRSTRLEN];
        if (inet_ntop(family, bytes, text, sizeof(text)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        ip = PyUnicode_FromString(text);
        if (ip == NULL)
            return NULL;
        memcpy(self->last_addr, bytes, n);
    }
    Py_XSETREF(self->last_ip, ip);
    self->last_family = family;
    *changed = 1;
    return ip;
}

static PyObject *Receiver_recv(Receiver *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "recv(budget, cap) takes 2 arguments");
        return NULL;
    }
    if (self->buffers == NULL) {
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
    PyObject *frames = PyList_New(0);
    PyObject *runs = PyList_New(0);
    if (frames == NULL || runs == NULL)
        goto error;
    /* A new batch: its first frame always starts a run. */
    Py_CLEAR(self->last_ip);
    self->last_family = -1;
    long long nbytes = 0;
    Py_ssize_t empty = 0, truncated = 0;
    int err = 0;
    while (budget > 0) {
        unsigned int want = budget < (Py_ssize_t)self->vlen ? (unsigned int)budget : self->vlen;
        for (unsigned int i = 0; i < want; i++) {
            self->iovs[i].iov_base = self->buffers + (size_t)i * self->bufsize;
            self->iovs[i].iov_len = self->bufsize;
            struct msghdr *h = &self->msgs[i].msg_hdr;
            h->msg_name = &self->addrs[i];
            h->msg_namelen = sizeof(struct sockaddr_storage);
            h->msg_iov = &self->iovs[i];
            h->msg_iovlen = 1;
            h->msg_control = NULL;
            h->msg_controllen = 0;
            h->msg_flags = 0;
            self->msgs[i].msg_len = 0;
        }
        int got;
        Py_BEGIN_ALLOW_THREADS
        got = recvmmsg(self->fd, self->msgs, want, MSG_DONTWAIT, NULL);
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
            const char *p = self->buffers + (size_t)i * self->bufsize;
            size_t len = self->msgs[i].msg_len;
            if (len > self->bufsize) /* cannot happen: recvmmsg reports what it copied */
                len = self->bufsize;
            nbytes += (long long)len;
            size_t n = rstrip_len(p, len);
            if (n == 0) {
                empty++;
                continue;
            }
            int cut = n > (size_t)cap;
            if (cut) {
                n = rstrip_len(p, (size_t)cap);
                truncated++;
            }
            int changed;
            PyObject *ip = source_ip(self, &self->addrs[i], self->msgs[i].msg_hdr.msg_namelen,
                                     &changed);
            if (ip == NULL)
                goto error;
            if (changed) {
                PyObject *run = Py_BuildValue("(nO)", PyList_GET_SIZE(frames), ip);
                if (run == NULL || PyList_Append(runs, run) < 0) {
                    Py_XDECREF(run);
                    goto error;
                }
                Py_DECREF(run);
            }
            PyObject *data = PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
            if (data == NULL)
                goto error;
            PyObject *frame = PyTuple_New(2);
            if (frame == NULL) {
                Py_DECREF(data);
                goto error;
            }
            PyTuple_SET_ITEM(frame, 0, data);
            PyTuple_SET_ITEM(frame, 1, Py_NewRef(cut ? Py_True : Py_False));
            int failed = PyList_Append(frames, frame);
            Py_DECREF(frame);
            if (failed < 0)
                goto error;
        }
        budget -= got;
        if ((unsigned int)got < want)
            break; /* the kernel had no more: the next call would say EAGAIN */
    }
    Py_CLEAR(self->last_ip);
    return Py_BuildValue("(NNLnni)", frames, runs, nbytes, empty, truncated, err);
error:
    Py_CLEAR(self->last_ip);
    Py_XDECREF(frames);
    Py_XDECREF(runs);
    return NULL;
}

static PyObject *Receiver_get_fd(Receiver *self, void *closure) {
    (void)closure;
    return PyLong_FromLong(self->fd);
}

static PyMethodDef Receiver_methods[] = {
    {"recv", (PyCFunction)(void (*)(void))Receiver_recv, METH_FASTCALL,
     "recv(budget, cap) -> (frames, runs, nbytes, empty, truncated, errno)\n\n"
     "Up to `budget` datagrams, recvmmsg after recvmmsg until EAGAIN."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Receiver_getset[] = {
    {"fd", (getter)Receiver_get_fd, NULL, "the socket's file descriptor", NULL},
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
    "Datagram reception in batches with recvmmsg, the GIL released during the call.",
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
