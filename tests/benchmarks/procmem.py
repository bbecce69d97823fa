"""Memory of this process, from /proc/self/status (Linux), for the benchmarks."""


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
