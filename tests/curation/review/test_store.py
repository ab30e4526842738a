"""review.sqlite: batches, history, undo, and several writers at once."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from curation.review.store import Change, ReviewError, ReviewStore


def test_latest_wins_and_history_is_kept(tmp_path):
    a, b = ReviewStore(tmp_path / "r.sqlite"), ReviewStore(tmp_path / "r.sqlite")  # two servers, one file
    a.record([Change("c1", "accept"), Change("c2", "accept")], "alice")
    b.record([Change("c1", "reject")], "bob")
    assert a.current()["c1"].decision == "reject" and a.current()["c1"].reviewer == "bob"  # b's write seen by a
    assert [h["reviewer"] for h in a.history("c1")] == ["alice", "bob"]
    assert a.counts() == {"accept": 1, "reject": 1, "skip": 0}
    assert a.path.with_name("r.sqlite-wal").exists()  # WAL: readers never wait for a writer
    a.close(), b.close()


def test_undo_marks_the_reviewers_latest_batch_and_restores_the_one_before(tmp_path):
    s = ReviewStore(tmp_path / "r.sqlite")
    s.record([Change("c1", "accept")], "alice")
    s.record([Change("c1", "reject"), Change("c2", "reject")], "alice")
    s.record([Change("c3", "skip")], "bob")
    assert sorted(s.undo("alice")) == ["c1", "c2"]
    cur = s.current()
    assert cur["c1"].decision == "accept" and "c2" not in cur and cur["c3"].decision == "skip"
    assert len(s.history("c2")) == 1 and s.history("c2")[0]["undone_at"]  # kept, marked undone
    assert s.undo("alice") == ["c1"] and s.undo("alice") == []
    assert s.current()["c3"].decision == "skip"  # bob's batch is bob's to undo


def test_tags_ride_alongside_decisions(tmp_path):
    s = ReviewStore(tmp_path / "r.sqlite")
    s.set_tag(1, "disney")
    s.record([Change("c1", None, ("disney",))], "alice")
    s.record([Change("c1", "accept")], "bob")
    assert s.current()["c1"].tags == ("disney",) and s.current()["c1"].decision == "accept"
    [review] = s.reviews()
    assert review.crop_id == "c1" and review.tags == ("disney",) and review.origin == "human"
    s.set_tag(2, "disney")  # a name moves to its new key
    assert s.tags() == {2: "disney"}


@pytest.mark.parametrize("bad", [
    dict(changes=[Change("c1", "maybe")], reviewer="alice"),
    dict(changes=[Change("c1", "accept")], reviewer=""),
    dict(changes=[Change("c1", "accept")], reviewer="<b>x</b>"),
    dict(changes=[Change("c1", None, ("a\x00b",))], reviewer="alice"),
    dict(changes=[Change("c1")], reviewer="alice"),
    dict(changes=[], reviewer="alice"),
])
def test_bad_changes_are_refused_and_nothing_is_written(tmp_path, bad):
    s = ReviewStore(tmp_path / "r.sqlite")
    with pytest.raises(ReviewError):
        s.record(bad["changes"], bad["reviewer"])
    assert s.current() == {}


def test_a_batch_is_one_transaction(tmp_path):
    s = ReviewStore(tmp_path / "r.sqlite")
    s.record([Change(f"c{i}", "accept") for i in range(500)], "alice")
    rows = sqlite3.connect(tmp_path / "r.sqlite").execute("SELECT COUNT(DISTINCT batch), COUNT(*) FROM decisions").fetchone()
    assert rows == (1, 500)


def test_threads_and_connections_writing_at_once_lose_nothing(tmp_path):
    stores = [ReviewStore(tmp_path / "r.sqlite") for _ in range(3)]

    def work(n: int) -> None:
        for i in range(60):
            stores[n % 3].record([Change(f"c{i}", "accept" if n % 2 else "reject")], f"r{n}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = stores[0]
    assert len(s.current()) == 60
    assert all(len(s.history(f"c{i}")) == 6 for i in range(60))
    for i in range(60):
        last = s.history(f"c{i}")[-1]
        assert s.current()[f"c{i}"].reviewer == last["reviewer"]
