# Datagram reception with recvmmsg (collector/_netio.c): what mypy needs to know of it.

class Receiver:
    fd: int
    def __init__(self, fd: int, bufsize: int, vlen: int = 64) -> None: ...
    def recv(
        self, budget: int, cap: int
    ) -> tuple[list[tuple[bytes, bool]], list[tuple[int, str | None]], int, int, int, int]: ...
