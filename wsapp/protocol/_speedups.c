/* Optional C speed-up for wsapp.protocol.masking: XOR a payload with its 4-byte mask.
 *
 * RFC 6455 section 5.3: every byte of a client frame's payload is XORed with the masking
 * key, cycled. Done a byte at a time in Python this dominates the cost of large messages;
 * here it runs 8 bytes at a time. wsapp.protocol.masking falls back to pure Python when
 * this module is missing (a platform without a compiler) or WSAPP_NO_SPEEDUPS is set.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* out[i] = in[i] ^ mask[(phase + i) % 4] for the length bytes: phase is where in the
 * mask the payload so far ended, so a payload in pieces is unmasked piece by piece. */
static void
xor_mask(unsigned char *out, const unsigned char *in, Py_ssize_t length,
         const unsigned char *mask, Py_ssize_t phase)
{
    unsigned char mask8[8];
    for (int j = 0; j < 8; j++) {
        mask8[j] = mask[(phase + j) & 3];
    }
    uint64_t wide;
    memcpy(&wide, mask8, 8);
    Py_ssize_t i = 0;
    /* Word-wise through memcpy: no alignment assumption, and compilers emit plain loads. */
    for (; i + 8 <= length; i += 8) {
        uint64_t chunk;
        memcpy(&chunk, in + i, 8);
        chunk ^= wide;
        memcpy(out + i, &chunk, 8);
    }
    for (; i < length; i++) {
        out[i] = in[i] ^ mask8[i & 3];
    }
}

static int
check_mask(const Py_buffer *key)
{
    if (key->len != 4) {
        PyErr_SetString(PyExc_ValueError, "the mask must be 4 bytes long");
        return -1;
    }
    return 0;
}

static PyObject *
apply_mask(PyObject *module, PyObject *args)
{
    Py_buffer data, key;
    if (!PyArg_ParseTuple(args, "y*y*:apply_mask", &data, &key)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (check_mask(&key) == 0) {
        result = PyBytes_FromStringAndSize(NULL, data.len);
        if (result != NULL) {
            xor_mask((unsigned char *)PyBytes_AS_STRING(result), data.buf, data.len, key.buf, 0);
        }
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&key);
    return result;
}

/* One pass over the pieces, straight into the result: joining them first would copy the
 * payload once more. */
static PyObject *
apply_mask_pieces(PyObject *module, PyObject *args)
{
    PyObject *pieces;
    Py_buffer key;
    if (!PyArg_ParseTuple(args, "Oy*:apply_mask_pieces", &pieces, &key)) {
        return NULL;
    }
    PyObject *result = NULL, *sequence = NULL;
    Py_buffer *views = NULL;
    Py_ssize_t count = 0, got = 0, total = 0;
    if (check_mask(&key) < 0) {
        goto done;
    }
    sequence = PySequence_Fast(pieces, "pieces must be a sequence of bytes-like objects");
    if (sequence == NULL) {
        goto done;
    }
    count = PySequence_Fast_GET_SIZE(sequence);
    views = PyMem_Calloc(count ? count : 1, sizeof(Py_buffer));
    if (views == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < count; got++) {
        PyObject *item = PySequence_Fast_GET_ITEM(sequence, got);
        if (PyObject_GetBuffer(item, &views[got], PyBUF_SIMPLE) < 0) {
            goto done;
        }
        total += views[got].len;
    }
    result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL) {
        goto done;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    Py_ssize_t offset = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        xor_mask(out + offset, views[i].buf, views[i].len, key.buf, offset);
        offset += views[i].len;
    }
done:
    for (Py_ssize_t i = 0; i < got; i++) {
        PyBuffer_Release(&views[i]);
    }
    PyMem_Free(views);
    Py_XDECREF(sequence);
    PyBuffer_Release(&key);
    return result;
}

static PyMethodDef methods[] = {
    {"apply_mask", apply_mask, METH_VARARGS,
     "apply_mask(data, mask) -> bytes: data XORed with the 4-byte mask, cycled."},
    {"apply_mask_pieces", apply_mask_pieces, METH_VARARGS,
     "apply_mask_pieces(pieces, mask) -> bytes: the pieces joined, XORed with the mask."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "wsapp.protocol._speedups", NULL, 0, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
