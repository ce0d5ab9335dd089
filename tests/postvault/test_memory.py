"""postvault.memory: freed heap goes back to the system, so long-running parsers stay small."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    # A fresh interpreter: the test's own heap (pytest, fixtures) would blur the numbers.
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip()


def test_release_free_memory_returns_a_freed_heap_to_the_system() -> None:
    output = _run(
        """
        from postvault.memory import release_free_memory

        def anon_mb():
            for line in open("/proc/self/status"):
                if line.startswith("RssAnon"):
                    return int(line.split()[1]) // 1024

        # 60 KB blocks come from the brk heap (below glibc's mmap threshold); keeping the
        # last one pins the heap's top, so only malloc_trim can give the rest back.
        blocks = [bytearray(60_000) for _ in range(4_000)]
        pinned = blocks[-1]
        del blocks
        before = anon_mb()
        release_free_memory()
        print(before, anon_mb())
        """
    )
    before, after = map(int, output.split())
    assert before > 200, f"the freed blocks should still be resident before the trim ({before} MB)"
    assert after < before - 150, f"trim gave back too little: {before} MB -> {after} MB"


def _arenas_after_threads(limit: bool) -> int:
    output = _run(
        f"""
        import ctypes, os, tempfile, threading
        from postvault.memory import limit_malloc_arenas

        if {limit}:
            limit_malloc_arenas()
        barrier = threading.Barrier(8)
        kept = []

        def allocate():
            barrier.wait()  # all at once: contention is what makes glibc open new arenas
            kept.append([bytearray(1_000) for _ in range(20_000)])

        threads = [threading.Thread(target=allocate) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        libc = ctypes.CDLL("libc.so.6")
        libc.fopen.restype = ctypes.c_void_p
        path = tempfile.mktemp()
        handle = libc.fopen(path.encode(), b"w")
        libc.malloc_info(0, ctypes.c_void_p(handle))
        libc.fclose(ctypes.c_void_p(handle))
        print(open(path).read().count("<heap nr="))
        os.unlink(path)
        """
    )
    return int(output)


def test_limit_malloc_arenas_caps_the_arenas_threads_create() -> None:
    assert _arenas_after_threads(limit=True) <= 2
    assert _arenas_after_threads(limit=False) > 2, "without the cap, eight contending threads open more arenas"
