"""Speed benchmarks (`make bench`): measured figures live here, never in timed tests."""


def memory_bytes() -> tuple[int, int]:
    """(resident now, peak resident) of this process, from ``/proc/self/status``. The peak is
    the address space's own high-water mark: unlike ``getrusage``'s ``ru_maxrss``, which Linux
    carries across ``exec``, it does not include the parent that spawned this process."""
    now = peak = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    return now, peak
