"""Memory of this process, from /proc/self/status, and the CPU other processes used meanwhile,
from /proc/stat (Linux), for the benchmarks."""
import os
import time


def status_mib(field):
    """A size field of /proc/self/status ("VmHWM", "RssAnon", "RssFile"...), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key == field:
                return int(rest.split()[0]) / 1024
    raise KeyError(field)


def reset_peak():
    """Restart VmHWM (peak RSS) from the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_mib():
    """Peak RSS since the last reset_peak(), in MiB; it counts mapped file pages too."""
    return status_mib("VmHWM")


class OtherLoad:
    """CPU that other processes used while a part ran, in cores on average.

    The machine's busy time (/proc/stat) minus this process's and its waited-for
    children's (os.times): a check that the figures were not taken beside other work."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:]]
        busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
        own = sum(os.times()[:4])
        return busy, own, time.perf_counter()

    def cores(self):
        (busy0, own0, wall0), (busy1, own1, wall1) = self.start, self._sample()
        return max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall1 - wall0)
