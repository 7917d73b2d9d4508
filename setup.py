"""The optional C speed-up; everything else about the package is in pyproject.toml.

``optional=True``: where it cannot be compiled (no compiler, no Python headers), the build
goes on without it and wsapp uses its pure-Python masking.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("wsapp.protocol._speedups", ["wsapp/protocol/_speedups.c"], optional=True)
    ]
)
