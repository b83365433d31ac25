"""The native hot path, built by `pip install .` when a C compiler and the
Python headers are there (metadata lives in pyproject.toml). `optional=True`:
when a build fails, the install goes on and the pure-Python code runs
(`_native`: the parser; `_netio`: datagram reception with recvmmsg;
`_render`: records to JSON).
CFLAGS/LDFLAGS from the environment are added (`make fuzz` builds it with
sanitizers that way)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "collector._native",
            ["collector/_native.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        ),
        Extension(
            "collector._netio",
            ["collector/_netio.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        ),
        # Records -> the API's JSON (query.py falls back to its own renderer without it).
        Extension(
            "collector._render",
            ["collector/_render.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        ),
    ]
)
