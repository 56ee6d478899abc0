"""How many threads the engines may use: no more than the caller allows the thread pools it knows.

BLAS reads limits set with ``threadpoolctl.threadpool_limits`` (or ``OPENBLAS_NUM_THREADS``) by
itself; scipy.fft's workers and Numba's parallel loops do not. They get the smallest thread
count among the BLAS and OpenMP libraries loaded in the process, so a caller that limits those
to one thread gets a single-threaded convgrad, and two pools never oversubscribe the cores.

Small work stays on the calling thread (``serial_under``): a parallel loop waits at its end for
every thread it woke, so when another process holds a core a call waits for the scheduler to run
its second thread, milliseconds, whatever the call's size. Measured beside one busy process on
this 2-core machine: a 2 x 16 x 16 x 16 depthwise conv that takes 0.05 ms had calls of 28-40 ms.

A parallel loop also waits for a thread that another process keeps off its core, so a call runs its
loops on no more threads than there are cores that nothing else runs on (``free_cores``, read at
most every FREE_SECONDS from the kernel's count of runnable threads). Measured beside one busy
process on this 2-core machine (other jobs' load 7-9, the measuring process at high priority; 9
rows of the benchmark suite, channels-last, A/B alternating in one process): two threads took
0.90-1.29x the median of one thread, with worst calls of 2.4-11.4x their median against 2.0-3.5x;
the check took 0.62-1.03x the medians of always using both threads, and with a count saying the
machine is idle it cost nothing measurable (0.95-1.08x, noise). Measured again on ~1 ms calls
(dilated_3x3_d2's three ops, transposed_k4_s2's input gradient: Winograd, the runs kernel, the
regions, which claim chunks; this process and the busy one at nice -20 over other jobs' load
3-6, 3 rounds of 31 calls, A/B in one process): with PyTorch imported first (its OpenMP, which
Numba's loops then share, spins ~8 ms after a loop) two threads beside the busy process took
0.49-0.77x the median of one thread in 8 of 10 row-runs, 2.0-2.5x in 2 (whole rounds at 4-8 ms:
one or two 4 ms scheduler ticks waited at the loop's end for a thread the busy process kept off
its core), with worst calls of 3.2-16x their median against 2.6-6.1x; without PyTorch (passive
waiting) 0.97-1.48x. A thread that claims chunks still has to reach the loop's closing barrier,
so claiming does not avoid that wait; the count stays one thread per busy core.

BLAS products that convgrad makes itself (the FFT engine's DFT GEMMs) run through ``matmul``:
OpenBLAS on one thread within them and the product in parts fixed by its shape, run on the free
cores by the caller and a small thread pool, so that the bits depend on the shapes only (OpenBLAS's
own thread count changes them). Measured on large_kernel_31 (4 x 32 x 32 x 32, 31 x 31 filter,
float32, three ops, both layouts) under other jobs' load 8-10, A/B in one process, 3 rounds of
15-21 calls: medians 13-46 ms against 60-686 with OpenBLAS's threads, worst calls 38-104 ms
against 409-2,752; CPU time per call 4.8-7.4 ms against 10-620 (OpenBLAS's threads spin).

Numba's OpenMP pool is started with passive waiting (``_kernels.start_pool``): GNU OpenMP's threads spin
after each parallel loop by default, taking the cores that other processes (or the caller's other
libraries) need, and on a loaded machine a spinning thread waits at a barrier for one that is not
running. Measured on this 2-core machine under other jobs' load (load average 14): depthwise
3x3 kernels of 8 x 128 x 56 x 56 on two threads, median 40-48 ms spinning, 6-12 ms passive (one
thread: 1.4-13 ms). A caller's own OMP_WAIT_POLICY or GOMP_SPINCOUNT is kept.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import math
import os
import threading
import time

_controller = None
_CORES = os.cpu_count() or 1  # every core the kernel schedules on: /proc/loadavg counts for all
try:
    _USABLE = len(os.sched_getaffinity(0)) or _CORES  # the cores this process may run on
except (AttributeError, OSError):  # no affinity on this system
    _USABLE = _CORES

# Ops of fewer multiply-adds and adds than this run on the calling thread only: 40-170 us at the
# dense kernels' 100-400 GFLOP/s, 0.7 ms at the depthwise kernels' 25. A policy, not a machine
# figure: a second thread saves at most half of that, and one stall at a parallel loop's barrier
# on a shared machine (a scheduler time slice, 3-20 ms measured) costs tens of such calls. Counted
# in flops, not the plan's estimate: a plan made before its kernels were loaded keeps their load
# time in its estimate. Every row of the benchmark suite is larger (58 MFLOP and up).
SERIAL_FLOPS = 2**24

_local = threading.local()
_blas_lock = threading.Lock()
_blas: list = [0, [], 1]  # holds in flight, (library, its count before) each, allowed() before


@contextlib.contextmanager
def serial_under(flops: int):
    """One op's call: within the block, on this thread, ``allowed()`` is 1 when ``flops`` (the op's
    count) is under SERIAL_FLOPS, and ``shared()`` is counted once, at the first parallel loop,
    for all of them (each count read the thread pools' limits through threadpoolctl and set
    Numba's: 16 us, two or three times a call)."""
    before = (getattr(_local, "serial", False), getattr(_local, "counted", None),
              getattr(_local, "numba", None))
    _local.serial = before[0] or flops < SERIAL_FLOPS
    _local.counted, _local.numba = 0, None  # not counted yet in this call, Numba's pool not set
    try:
        yield
    finally:
        _local.serial, _local.counted, _local.numba = before


def allowed() -> int:
    """The thread count every engine keeps to (at least 1): 1 for small work (``serial_under``),
    else the smallest limit of the loaded thread pools; all cores without threadpoolctl."""
    if getattr(_local, "serial", False):
        return 1
    with _blas_lock:  # not while ``one_blas_thread`` sets OpenBLAS to one thread or back
        if _blas[0]:  # BLAS held at one thread by ``one_blas_thread``: the limits from before
            return _blas[2]
        return _limits()


def cores() -> int:
    """The cores this process may run on: what the engines split work into partial results by
    (partial sums, shares of rows), never the threads a caller allows at the time (threadpoolctl's
    limits), so that a plan made under ``threadpool_limits(1)`` splits for every core once the
    limit is lifted (it kept one share: transposed_k4_s2's filter gradient ran 11.0 ms on two threads
    against 6.5), and results do not depend on the limit."""
    return _USABLE


def _limits() -> int:
    """The smallest thread limit among the loaded BLAS and OpenMP libraries."""
    global _controller
    if _controller is None:  # libraries are scanned once, after NumPy's and SciPy's BLAS loaded
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # a declared dependency; without it there are no limits to read
            return _CORES
        _controller = ThreadpoolController()
    counts = [lib.num_threads for lib in _controller.lib_controllers]
    return max(1, min(counts)) if counts else _CORES


# How long a count of the free cores is kept: counting costs 70 us (9 us /proc/loadavg, 60 us
# this process's 4 threads' states), a call of the smallest parallel op 100 us; a busy process
# that starts or stops is seen within this time.
FREE_SECONDS = 0.05
LOADAVG = "/proc/loadavg"  # its 4th field: runnable threads of the whole machine / all threads
TASKS = "/proc/self/task"  # this process's threads, each with its state in <tid>/stat
_free = [-1.0, _USABLE]  # when last counted, free cores then


def _own_running() -> int:
    """This process's threads that are running or waiting to run (the caller among them)."""
    n = 0
    for tid in os.listdir(TASKS):
        try:
            with open(f"{TASKS}/{tid}/stat", "rb") as f:
                n += f.read().rsplit(b")", 1)[1].split()[0] == b"R"
        except (OSError, IndexError):  # a thread that ended meanwhile
            pass
    return n


def free_cores() -> int:
    """Cores that no other process's thread is running or waiting to run on, at least 1: the
    cores this process may use, less the machine's runnable threads outside this process (all of
    them where the kernel's counts cannot be read). This process's own (another library's pool
    spinning a few ms after its call, OpenBLAS's for 0.1 s) are left out: they stop by
    themselves, and counted, they made the calls that follow them single-threaded. Counted at
    most every FREE_SECONDS."""
    now = time.monotonic()
    when, n = _free
    if 0 <= now - when < FREE_SECONDS:
        return n
    try:
        with open(LOADAVG, "rb") as f:
            running = int(f.read().split()[3].split(b"/")[0])
        others = max(0, running - _own_running())
    except (OSError, ValueError, IndexError):  # not Linux, or no /proc: nothing to go by
        others = 0
    n = max(1, min(_USABLE, _CORES - others))
    _free[:] = [now, n]
    return n


def shared() -> int:
    """``allowed()``, no more than ``free_cores()``: the threads of a pool whose results do not
    depend on its size (Numba's loops here; pocketfft's workers, each of which runs whole 1-D
    transforms: rfftn, ifft, irfft and irfftn measured bitwise equal on 1 to 4 workers, 168
    transforms of 3-D to 5-D float32 and float64 arrays). Within one op's call (``serial_under``)
    the first count holds for the rest of the call."""
    counted = getattr(_local, "counted", None)
    if counted:
        return counted
    n = allowed()
    n = min(n, free_cores()) if n > 1 else n
    if counted == 0:
        _local.counted = n
    return n


def for_numba() -> int:
    """Set Numba's parallel loops to ``shared()`` threads (within its pool), and return that
    count; within one op's call, once."""
    from . import _kernels

    counted = getattr(_local, "counted", None)
    done = getattr(_local, "numba", None)  # (this call's count, the threads set for it)
    if counted and done is not None and done[0] == counted:
        return done[1]
    n = shared()
    if _kernels.NUMBA:
        import numba

        n = max(1, min(n, numba.config.NUMBA_NUM_THREADS))
        _kernels.start_pool()
        numba.set_num_threads(n)
        counted = getattr(_local, "counted", None)
        _local.numba = (counted, n) if counted else None
    return n


# The BLAS products convgrad makes itself run in parts fixed by the operands' shapes, never by the
# threads that run them, so that the bits do not depend on the load; up to MATMUL_PARTS of them,
# more than the cores, so that a thread that runs takes over the parts of one that waits for its
# core, each part of PART_FLOPS or more (a helper thread wakes in 10-50 us) and PART_ROWS rows or
# more along the axis cut: each part packs the whole of the other operand again, which costs
# about as much as 2 x 10-25 multiply-adds per element it packs (memory-bound copies).
MATMUL_PARTS = 8
PART_FLOPS = 2**22
PART_ROWS = 128
_pool = None
_held_libraries = None


def _helpers():
    """The threads that run the parts beside their caller (one fewer than the cores)."""
    global _pool
    with _blas_lock:
        if _pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _pool = ThreadPoolExecutor(max_workers=max(1, _USABLE - 1), thread_name_prefix="convgrad-blas")
        return _pool


def _openblas() -> list | None:
    """(get, set) the thread count of each BLAS library of the process, when every one is OpenBLAS
    on its own threads (pthreads); None otherwise (MKL, BLIS, Accelerate, OpenBLAS on OpenMP, which
    reads OpenMP's count back on every call, or no threadpoolctl): convgrad's products then run as
    NumPy's and SciPy's, on the library's threads. OpenBLAS's own functions, called directly:
    threadpoolctl's ``set_num_threads`` does nothing on a thread other than the first that
    called it (its 'controlling thread'), so a hold from a helper or a caller's thread did nothing."""
    global _held_libraries
    if _held_libraries is None:
        _limits()
        libs = [lib for lib in getattr(_controller, "lib_controllers", []) if lib.user_api == "blas"]
        found = [_count_functions(lib) for lib in libs]
        _held_libraries = found if _controller is not None and all(found) else False
    return _held_libraries if _held_libraries is not False else None


def _count_functions(lib) -> tuple | None:
    """OpenBLAS's ``openblas_get_num_threads`` and ``openblas_set_num_threads`` of one library
    (with the symbol prefix and suffix it was built with: SciPy's and NumPy's wheels bundle their
    own, ``scipy_openblas_get_num_threads64_``), or None."""
    if lib.internal_api != "openblas" or getattr(lib, "threading_layer", "") != "pthreads":
        return None
    for prefix in ("", "scipy_"):
        for suffix in ("", "64_", "_64"):
            get = getattr(lib.dynlib, f"{prefix}openblas_get_num_threads{suffix}", None)
            put = getattr(lib.dynlib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                put.restype, put.argtypes = None, [ctypes.c_int]
                return get, put
    return None


@contextlib.contextmanager
def one_blas_thread():
    """OpenBLAS on one thread within the block; nested and concurrent blocks share one hold, and the
    counts from before the first are set back when the last ends (``allowed()`` keeps reporting
    the limits from before meanwhile). For the whole process: OpenBLAS's thread count is one
    number (``openblas_set_num_threads_local``, 0.3.27 on, sets that same number and returns the
    one before: pairs of it from two threads set each other's back, so a limit of one leaked). A
    no-op where ``_openblas()`` is None."""
    libs = _openblas()
    if libs is None:
        yield
        return
    with _blas_lock:
        # The hold is counted before OpenBLAS is set to one thread and until it is set back:
        # ``allowed()`` on another thread reads the count without the lock, and meanwhile would
        # read OpenBLAS's 1 as the caller's limit (a plan then cut a filter gradient into other
        # parts than a single-threaded one: other bits).
        first = _blas[0] == 0
        if first:
            _blas[2] = _limits()
            _blas[1] = [(put, get()) for get, put in libs]
        _blas[0] += 1
        if first:
            for put, _ in _blas[1]:
                put(1)
    try:
        yield
    finally:
        with _blas_lock:
            if _blas[0] == 1:
                for put, n in _blas[1]:
                    put(n)
                _blas[1] = []
            _blas[0] -= 1


def _parts(length: int, flops: int, least: int = PART_ROWS, most: int = MATMUL_PARTS) -> list[int]:
    """Cuts of ``range(length)`` into at most ``most`` parts fixed by the shape (``flops``: the
    whole product's), parts of ``least`` or more: see MATMUL_PARTS."""
    n = max(1, min(most, length // least, flops // PART_FLOPS))
    return [length * i // n for i in range(n + 1)]


def _matrix_parts(a, b, flops: int) -> tuple[bool, list[int]]:
    """How to cut the product of the matrices a and b: along a's rows (True) or b's columns, the
    one whose parts leave the smaller operand to be packed again by every part; and the cuts."""
    rows = b.size <= a.size
    return rows, _parts(a.shape[0] if rows else b.shape[1], flops)


def _run_parts(count: int, part) -> None:
    """``part(i)`` for i < count, on ``shared()`` threads: the caller's and the helpers', each
    claiming the next part, so one that another process holds up leaves its parts to the rest."""
    claimed = iter(range(count))
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                i = next(claimed, None)
            if i is None:
                return
            part(i)

    threads = min(shared(), count)
    # Each helper runs in a copy of the caller's context: NumPy's errstate is a context variable,
    # and a pool thread's own would warn (or raise) where the caller asked NumPy to ignore.
    helpers = [_helpers().submit(contextvars.copy_context().run, work) for _ in range(threads - 1)]
    try:
        work()
    finally:
        for h in helpers:
            if not h.cancel():  # one that never started has nothing left to do
                h.result()


def matmul(a, b, out=None):
    """``np.matmul(a, b, out=out)`` with OpenBLAS on one thread (``one_blas_thread``), in parts run
    on ``shared()`` threads (``_run_parts``): for two matrices a's rows or b's columns
    (``_matrix_parts``); for a matrix or a stack times a stack of the same length, the stack (and
    each matrix's rows, where the stack is shorter than MATMUL_PARTS); for stacks of stacks of one
    shape (Winograd's tile elements by groups), their matrices. Other shapes (broadcast stacks)
    run whole, on one thread.

    OpenBLAS's own threads follow neither the free cores (a call beside one busy process waited
    8.7-13.6x its median for a descheduled thread) nor a fixed split (its thread count changes the
    bits), and spin ~0.1 s after each call on the cores the next call needs (a Numba kernel right
    after one ran ~1.8x slower). Here each part is one-threaded BLAS on a slice fixed by the
    shapes: the bits depend on the shapes only. As NumPy's where ``_openblas()`` is None.
    """
    import numpy as np

    if _openblas() is None:
        return np.matmul(a, b, out=out)
    if out is None:
        shape = (*np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1])
        out = np.empty(shape, np.result_type(a, b))
    flops = 2 * out.size * a.shape[-1]
    count, part = 1, lambda i: np.matmul(a, b, out=out)
    if a.ndim == b.ndim == 2:
        rows, cuts = _matrix_parts(a, b, flops)
        count = len(cuts) - 1

        def part(i):
            s = slice(cuts[i], cuts[i + 1])
            if rows:
                np.matmul(a[s], b, out=out[s])
            else:
                np.matmul(a, b[:, s], out=out[:, s])

    elif b.ndim == out.ndim == 3 and (a.ndim == 2 or (a.ndim == 3 and a.shape[0] == b.shape[0])):
        stack = b.shape[0]
        batches, rows = _parts(stack, flops, 1), [0, out.shape[1]]
        if len(batches) - 1 == stack < MATMUL_PARTS:  # a short stack: each matrix's rows too
            rows = _parts(out.shape[1], flops // stack, most=MATMUL_PARTS // stack)
        count, n = (len(batches) - 1) * (len(rows) - 1), len(rows) - 1

        def part(i):
            k, r = divmod(i, n)
            s, t = slice(batches[k], batches[k + 1]), slice(rows[r], rows[r + 1])
            np.matmul(a[t] if a.ndim == 2 else a[s, t], b[s], out=out[s, t])

    elif a.ndim == b.ndim == out.ndim > 3 and a.shape[:-2] == b.shape[:-2]:  # stacks of stacks
        lead = a.shape[:-2]
        batches = _parts(math.prod(lead), flops, 1)
        count = len(batches) - 1

        def part(i):
            for k in range(batches[i], batches[i + 1]):
                j = np.unravel_index(k, lead)
                np.matmul(a[j], b[j], out=out[j])

    with one_blas_thread():
        _run_parts(count, part)
    return out


def gemm_into(gemm, a, b, c, *, beta: float, trans_b: int = 0) -> None:
    """``_common.gemm_into`` (c <- a @ op(b) + beta * c, SciPy's BLAS on Fortran-ordered views) with
    OpenBLAS on one thread, in parts along c's rows or columns run on ``shared()`` threads (see
    ``matmul``)."""
    from ._common import gemm_into as whole

    if _openblas() is None:
        whole(gemm, a, b, c, beta=beta, trans_b=trans_b)
        return
    rows, cuts = _matrix_parts(a, b.T if trans_b else b, 2 * c.size * a.shape[1])

    def part(i):
        s = slice(cuts[i], cuts[i + 1])
        if rows:
            whole(gemm, a[s], b, c[s], beta=beta, trans_b=trans_b)
        else:
            whole(gemm, a, b[s] if trans_b else b[:, s], c[:, s], beta=beta, trans_b=trans_b)

    with one_blas_thread():
        _run_parts(len(cuts) - 1, part)
