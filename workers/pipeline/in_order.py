"""Numbered tasks run on a thread pool, one step of which must happen in their numbers' order.

Copy detection aligns pairs of files on several threads, but decodes exact moments of videos
under a budget shared by the whole detection (copies.find_stretches): which moments the
budget leaves out must not depend on which thread got there first. Task n calls `wait(n)`
before such a step (or calls the step through `in_turn`): it goes on once every task
numbered below n has finished, so those steps happen as one thread would take them. The
lowest unfinished task never waits, and a pool starts tasks in their order, so a waiting
task always waits for running ones (never for one a cancelled pool will not start).
Each task must call `finished` when it ends, however it ends."""
import threading


class InOrder:
    def __init__(self):
        self._finished = set()
        self._next = 0  # every task below this number has finished
        self._changed = threading.Condition()

    def wait(self, number):
        """Return once every task numbered below `number` has finished."""
        with self._changed:
            self._changed.wait_for(lambda: self._next >= number)

    def in_turn(self, number, step):
        """`step` as task `number` calls it: each call waits for the tasks below it (`wait`)."""
        def waited(*args):
            self.wait(number)
            return step(*args)
        return waited

    def finished(self, number):
        with self._changed:
            self._finished.add(number)
            while self._next in self._finished:
                self._finished.discard(self._next)
                self._next += 1
            self._changed.notify_all()
