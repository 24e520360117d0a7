"""Membership rows and singleton roles (meta/members.py) on both backends, on the database's clock."""

from __future__ import annotations

from metacontract import backend, meta  # noqa: F401 - fixtures

from exastor.meta import members


def test_heartbeats_make_members_alive_and_silence_makes_them_down(backend, meta):
    members.heartbeat(meta, "gateway a", members.GATEWAY, "host-a:9000")
    members.heartbeat(meta, "drive-server http://10.0.0.5:9100", members.DRIVE_SERVER, "http://10.0.0.5:9100")
    rows = {m.id: m for m in members.members(meta)}
    assert {m.state for m in rows.values()} == {"alive"} and rows["gateway a"].address == "host-a:9000"
    assert members.mark_down(meta, 60_000) == []  # seen just now
    down = members.mark_down(meta, -1)            # "not seen since a moment from now": everyone
    assert sorted(m.id for m in down) == sorted(rows) and members.mark_down(meta, -1) == []
    assert {m.state for m in members.members(meta)} == {"down"}
    members.heartbeat(meta, "gateway a", members.GATEWAY, "host-a:9001")
    again = {m.id: m for m in members.members(meta)}
    assert again["gateway a"].state == "alive" and again["gateway a"].address == "host-a:9001"
    assert again["gateway a"].started_ms == rows["gateway a"].started_ms
    assert members.forget(meta, -1) == 1  # the drive server's row: down and unseen
    assert [m.id for m in members.members(meta)] == ["gateway a"]


def test_one_holder_of_a_role_at_a_time_and_the_epoch_grows_with_each_holder(backend, meta):
    assert members.hold_role(meta, "cluster-manager", "a", 60_000) == 1
    other = backend.open()  # another gateway
    assert members.hold_role(other, "cluster-manager", "b", 60_000) is None
    assert members.hold_role(meta, "cluster-manager", "a", 0) == 1  # renewed (here: to expire at once)
    assert members.role(meta, "cluster-manager").expired
    assert members.hold_role(other, "cluster-manager", "b", 60_000) == 2
    assert members.hold_role(meta, "cluster-manager", "a", 60_000) is None  # a learns it lost the role
    role = members.role(other, "cluster-manager")
    assert (role.holder, role.epoch, role.expired) == ("b", 2, False)
