"""The workers' shared board: what one worker writes, another (forked) process reads."""

from __future__ import annotations

import os

from exastor.gateway import supervise


def test_board_is_shared_across_fork_and_says_why_not_ready(monkeypatch):
    board = supervise.Board(2)
    assert board.not_serving() == "worker 0 is starting"
    pid = os.fork()
    if pid == 0:  # a worker marks itself ready from its own process
        board.set_state(1, supervise.READY)
        os._exit(0)
    os.waitpid(pid, 0)
    board.set_state(0, supervise.READY)
    assert board.not_serving() is None
    now = supervise.time.monotonic()
    monkeypatch.setattr(supervise.time, "monotonic", lambda: now + supervise.STALE_S + 1)
    assert board.not_serving() == "worker 0 has not answered for 11 s"
    monkeypatch.undo()
    board.set_state(1, supervise.STOPPED)
    assert board.not_serving() == "worker 1 stopped"
    board.set_state(1, supervise.READY)
    board.set_draining()
    assert board.not_serving() == "draining"
