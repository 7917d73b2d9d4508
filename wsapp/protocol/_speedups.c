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

static PyObject *
apply_mask(PyObject *module, PyObject *args)
{
    Py_buffer data, key;
    if (!PyArg_ParseTuple(args, "y*y*:apply_mask", &data, &key)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (key.len != 4) {
        PyErr_SetString(PyExc_ValueError, "the mask must be 4 bytes long");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result == NULL) {
        goto done;
    }
    const unsigned char *in = data.buf;
    const unsigned char *mask = key.buf;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    Py_ssize_t length = data.len, i = 0;
    unsigned char mask8[8];
    memcpy(mask8, mask, 4);
    memcpy(mask8 + 4, mask, 4);
    uint64_t wide;
    memcpy(&wide, mask8, 8);
    /* Word-wise through memcpy: no alignment assumption, and compilers emit plain loads. */
    for (; i + 8 <= length; i += 8) {
        uint64_t chunk;
        memcpy(&chunk, in + i, 8);
        chunk ^= wide;
        memcpy(out + i, &chunk, 8);
    }
    for (; i < length; i++) {
        out[i] = in[i] ^ mask[i & 3];
    }
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&key);
    return result;
}

static PyMethodDef methods[] = {
    {"apply_mask", apply_mask, METH_VARARGS,
     "apply_mask(data, mask) -> bytes: data XORed with the 4-byte mask, cycled."},
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
