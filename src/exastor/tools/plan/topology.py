"""The cluster design behind a bill of materials: cells, hosts, erasure per cell, metadata clusters.

`exastor plan` buys drives, enclosures, servers and racks; this module says how they are cut into a
store (docs/scale.md is the reasoning, and its tables are generated from here):

* a **cell** is a set of whole racks with its own dedupe domain and metadata: the blast radius of a
  bad deploy, a metadata fault or a runaway repair. A cell has ``cell_racks`` racks (default k+m:
  one shard of every stripe per rack, so a cell survives a whole rack plus m-1 further failures);
* the **erasure geometry** of a cell is the input's, or, when the input names none (``auto``), what
  the store itself picks for the drives of the smallest cell (``erasure.auto``, engine/erasure.py),
  with cells cut for the table's widest stripe (``erasure.AUTO_WIDTH`` racks);
* every **host** (a planner ``server`` with its enclosures) runs one drive server for its drives and
  one stateless gateway, so gateways = drive servers = hosts;
* a cell's **metadata** lives in PostgreSQL clusters (a primary, one synchronous standby and
  ``pg_standbys - 1`` more standbys under Patroni + etcd), each at most ``pg_cluster_max_tb``;
  the namespace is range-partitioned across them and the chunk index is split by fingerprint;
  one small directory cluster maps namespace ranges to clusters. A single host keeps SQLite;
* metadata rows come from the **chunk-size policy** (``topology.chunking``): larger chunks for larger
  objects keep the chunk index finite. Chunk rows are an upper bound: every logical byte counted as
  if it were unique (dedupe only lowers it), as the issue counts 2 EB / 64 KiB = 3.05e13 rows.

Bytes per row are measured (bench/pg_row_bytes.py) and derived from the PostgreSQL schema
(meta/migrations/postgres/0001_initial.sql) and PostgreSQL's page layout ("Database Page Layout" in its manual: 23-byte tuple header rounded to 24,
4-byte line pointer, 8-byte MAXALIGN; a B-tree leaf tuple is an 8-byte header plus the key). B-trees
filled by random keys settle near ln 2 = 69 % full (Yao, "On random 2-3 trees", 1978): 70 % is used
for random keys (fingerprints, object keys), ~100 % for sequential ones. Object and sketch rows
ASSUME 100-byte object keys and 20-byte bucket names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from exastor.engine import erasure
from exastor.tools.plan.model import PlanInput, TopologySettings
from exastor.tools.plan.sizing import BillOfMaterials

# Each figure is what bench/pg_row_bytes.py measured on PostgreSQL 15 (400,000 rows shaped and
# ordered as the store writes them; bench/results/pg_row_bytes.json), rounded up; beside it, the
# derivation from the page layout that it confirms.
# chunks: heap 24 + 80 (fp 33, segment, offset, stored_len, raw_len, codec, refs; NULL dead_since_ns)
# + line pointer 4 = 108; fp primary key (8 + 33 -> 48, +4) / 0.7 = 74; chunks_by_segment ~8 (a
# deduplicated B-tree: a segment holds hundreds of chunks, so the key is shared). Derived 190.
CHUNK_ROW_BYTES = 196
# sketches (the reducer's similarity index, one row per sketched chunk: every chunk unless
# topology.sketch_max_chunk says otherwise): heap 24 + 268 -> 296, +4 = 300; fp key 74; four
# (sf_i, seq) indexes (8 + 16, +4) / 0.7 = 40 each. Derived 534.
SKETCH_ROW_BYTES = 554
# engine/manifest.py: a 40-byte entry per chunk slice; fingerprints do not compress, so TOAST stores
# them as is, plus its chunk headers. Derived 40.
MANIFEST_ENTRY_BYTES = 42
# objects: heap ~290; primary key (bucket, key, version_id) 245, objects_live 189, objects_versions 211,
# objects_one_latest 189, objects_seq 22 (sequential). Derived 1,150.
OBJECT_ROW_BYTES = 1223
# segments + segment_layout rows, each ~60 bytes of heap and ~22 of sequential primary key. Derived 164.
SEGMENT_ROW_BYTES = 169
# shards: heap 60; (segment, idx) key 31; shards_by_drive ~7 (deduplicated). Derived 98.
SHARD_ROW_BYTES = 101

TB = 1e12  # the planner's capacities are decimal
TODAY_CHUNK_BYTES = 64 << 10  # engine/chunker.py's AVG_SIZE: every object is cut so today


@dataclass(frozen=True)
class MetadataLoad:
    """Rows and bytes of metadata for some logical capacity under the chunk-size policy."""

    chunk_rows: int            # upper bound: no dedupe credit
    sketch_rows: int           # chunks with a similarity-sketch row
    chunk_rows_at_64k: int     # the same capacity cut into today's 64 KiB chunks, for comparison
    mean_chunk_bytes: float
    manifest_entries: int
    objects: int
    segments: int
    shards: int
    bytes_by_table: dict[str, int]

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_table.values())


def metadata_load(logical_tb: float, reduction_ratio: float, k: int, m: int,
                  settings: TopologySettings) -> MetadataLoad:
    """Metadata rows and bytes for ``logical_tb`` (decimal TB) stored at ``reduction_ratio``, ``k+m`` stripes."""
    logical = logical_tb * TB
    chunk_rows = math.ceil(sum(c.byte_share * logical / c.chunk_bytes for c in settings.chunking))
    sketched = [c for c in settings.chunking if not settings.sketch_max_chunk or c.chunk_bytes <= settings.sketch_max_chunk]
    sketch_rows = math.ceil(sum(c.byte_share * logical / c.chunk_bytes for c in sketched))
    objects = math.ceil(sum(c.byte_share * logical / c.mean_object_bytes for c in settings.chunking))
    segments = math.ceil(logical / reduction_ratio / settings.segment_bytes)
    shards = segments * (k + m)
    by_table = {
        "chunks": chunk_rows * CHUNK_ROW_BYTES,
        "sketches": sketch_rows * SKETCH_ROW_BYTES,
        "manifests": chunk_rows * MANIFEST_ENTRY_BYTES,  # one entry per chunk cut from the object's bytes
        "objects": objects * OBJECT_ROW_BYTES,
        "segments": segments * SEGMENT_ROW_BYTES,
        "shards": shards * SHARD_ROW_BYTES,
    }
    mean_chunk = logical / chunk_rows if chunk_rows else 0.0
    return MetadataLoad(chunk_rows, sketch_rows, math.ceil(logical / TODAY_CHUNK_BYTES), mean_chunk, chunk_rows, objects, segments,
                        shards, by_table)


def grouped_loss(drives: int, k: int, m: int) -> tuple[int, float]:
    """The stripe groups of a cell of ``drives`` (engine/stripe_groups.py: groups of k+m drives, the
    leftovers widening some; one group, the whole cell, below 2(k+m) drives) and the probability
    that m+1 of its drives failing together lose data: the (m+1)-drive sets inside one group over
    all of them (every such set is some stripe's once a cell holds many stripes). About: the real
    groups are dealt per chunk of hosts, so their widths can differ a little from these."""
    width = k + m
    if drives < width or m == 0:
        return (0, 0.0) if drives < width else (1, 1.0)
    groups = drives // width if drives >= 2 * width else 1
    base, extra = divmod(drives, groups)
    inside = extra * math.comb(base + 1, m + 1) + (groups - extra) * math.comb(base, m + 1)
    return groups, inside / math.comb(drives, m + 1)


@dataclass(frozen=True)
class Topology:
    """The cluster design for everything online at one milestone."""

    logical_tb: float
    raw_tb: float                 # effective raw TB bought (spares set aside)
    erasure: str                  # "K+M"
    erasure_by_table: bool        # chosen by the store's table (erasure.auto) for the smallest cell's drives
    # hardware, from the bill of materials
    racks: int
    hosts: int
    drives: int
    drive_slots_per_host: int
    drives_per_host: float        # average filled slots
    hosts_per_rack: int           # the most in any rack
    # cells
    cells: int
    cell_racks_target: int
    racks_per_cell: tuple[int, int]    # (smallest cell, largest cell)
    hosts_per_cell: tuple[int, int]
    drives_per_cell: float
    logical_tb_per_cell: float
    raw_tb_per_cell: float
    # erasure inside the smallest cell
    shards_per_host: int          # at most, of one stripe
    shards_per_rack: int
    host_losses_survived: int     # whole hosts a stripe survives
    rack_losses_survived: int
    drive_losses_survived: int
    stripe_groups_per_cell: int   # engine/stripe_groups.py: fixed groups of about k+m drives (1: the whole cell)
    p_loss_m1_drives: float       # P(data lost | m+1 random drives of a cell fail together), with those groups
    # metadata
    backend: str                  # "PostgreSQL" or "SQLite"
    per_cell: MetadataLoad
    total: MetadataLoad
    pg_clusters_per_cell: int
    pg_clusters: int              # in all cells, plus the directory cluster
    pg_nodes: int                 # primaries + standbys, all clusters
    pg_sync_standbys: int         # per cluster
    pg_async_standbys: int        # per cluster
    directory_clusters: int
    etcd_members: int
    namespace_ranges: int
    chunk_rows_per_cluster: int
    metadata_tb_per_cluster: float
    # processes
    gateways: int
    drive_servers: int
    notes: list[str] = field(default_factory=list)


def cells_and_erasure(plan: PlanInput, bom: BillOfMaterials) -> tuple[int, int, erasure.Geometry]:
    """The cells ``bom``'s racks are cut into, the racks a cell should have, and the erasure geometry
    of the smallest cell: the input's, or (``protection.ec_auto``) what the store itself picks for
    that cell's drives, with cells cut for the table's widest stripe."""
    prot = plan.protection
    target = plan.topology.cell_racks or (erasure.AUTO_WIDTH if prot.ec_auto else prot.ec_data + prot.ec_parity)
    cells = max(1, bom.racks // target)
    if prot.ec_auto and bom.total_drives:
        return cells, target, erasure.auto(max(1, bom.total_drives // cells))
    return cells, target, erasure.Geometry(prot.ec_data, prot.ec_parity)


def topology(plan: PlanInput, logical_tb: float, bom: BillOfMaterials) -> Topology:
    """Cut the drives, hosts and racks of ``bom`` into cells, stripes and metadata clusters."""
    st = plan.topology
    by_table = plan.protection.ec_auto
    hosts, racks, drives = bom.servers, bom.racks, bom.total_drives
    slots = plan.enclosure.drive_slots * plan.server.enclosures_per_server
    notes: list[str] = []
    cells, target, g = cells_and_erasure(plan, bom)
    k, m = g.k, g.m
    if by_table and drives:
        sized = f"{plan.protection.ec_data}+{plan.protection.ec_parity}"
        notes.append(f"erasure {g} chosen by the store's automatic table (engine/erasure.py) for the "
                     f"{drives // cells:,} drives of the smallest cell" + ("" if str(g) == sized else
                                                                           f"; capacity sized for {sized}"))
    stripe = k + m

    if hosts == 0:
        empty = metadata_load(0.0, plan.reduction.ratio, k, m, st)
        return Topology(
            logical_tb=logical_tb, raw_tb=bom.effective_tb, erasure=f"{k}+{m}", erasure_by_table=by_table,
            racks=racks, hosts=0, drives=0,
            drive_slots_per_host=slots, drives_per_host=0.0, hosts_per_rack=0, cells=0, cell_racks_target=target,
            racks_per_cell=(0, 0), hosts_per_cell=(0, 0), drives_per_cell=0.0, logical_tb_per_cell=0.0,
            raw_tb_per_cell=0.0, shards_per_host=0, shards_per_rack=0, host_losses_survived=0,
            rack_losses_survived=0, drive_losses_survived=0, stripe_groups_per_cell=0, p_loss_m1_drives=0.0,
            backend="none", per_cell=empty, total=empty,
            pg_clusters_per_cell=0, pg_clusters=0, pg_nodes=0, pg_sync_standbys=0, pg_async_standbys=0,
            directory_clusters=0, etcd_members=0, namespace_ranges=0, chunk_rows_per_cluster=0,
            metadata_tb_per_cluster=0.0, gateways=0, drive_servers=0, notes=["no drives online at this milestone"])

    racks_cell = (racks // cells, -(-racks // cells))
    hosts_cell = (hosts // cells, -(-hosts // cells))
    if racks < target:
        notes.append(f"{racks} rack(s), fewer than the {target} a cell should have: one cell")

    # Erasure inside the smallest cell: placement puts at most ceil(stripe / hosts) shards on a host
    # (docs/design.md, "Placement") and, the same way, at most ceil(stripe / racks) on a rack.
    small_hosts, small_racks = max(1, hosts_cell[0]), max(1, racks_cell[0])
    per_host = -(-stripe // small_hosts)
    per_rack = -(-stripe // small_racks)
    drives_cell = drives / cells
    if small_hosts < stripe:
        notes.append(f"a cell has {small_hosts} host(s), fewer than k+m = {stripe}: up to {per_host} shards of a "
                     f"stripe per host, so a stripe survives {m // per_host} whole host(s)")
    if drives_cell < stripe:
        notes.append(f"a cell has {drives_cell:g} drives, fewer than k+m = {stripe}: the geometry does not fit")
    if hosts > 1 and small_hosts < m + 1:
        notes.append(f"fewer than m+1 = {m + 1} hosts per cell: write-buffer replicas share hosts")

    groups, p_loss = grouped_loss(round(drives_cell), k, m)
    per_cell = metadata_load(logical_tb / cells, plan.reduction.ratio, k, m, st)
    total = metadata_load(logical_tb, plan.reduction.ratio, k, m, st)
    if hosts == 1:
        backend, clusters_cell, clusters, directory, pg_nodes, etcd = "SQLite", 0, 0, 0, 0, 0
        ranges = 1
        rows_cluster, tb_cluster = per_cell.chunk_rows, per_cell.total_bytes / TB
        notes.append("one host: metadata stays in SQLite on it (the embedded default); no PostgreSQL")
    else:
        backend = "PostgreSQL"
        clusters_cell = max(1, math.ceil(per_cell.total_bytes / (st.pg_cluster_max_tb * TB)))
        directory = 1 if cells * clusters_cell > 1 else 0
        clusters = cells * clusters_cell + directory
        pg_nodes = clusters * (1 + st.pg_standbys)
        etcd = (cells + directory) * st.etcd_members_per_cell
        ranges = cells * clusters_cell * st.ranges_per_cluster
        rows_cluster = math.ceil(per_cell.chunk_rows / clusters_cell)
        tb_cluster = per_cell.total_bytes / clusters_cell / TB
        if small_hosts < 1 + st.pg_standbys:
            notes.append(f"fewer hosts per cell than PostgreSQL nodes per cluster ({1 + st.pg_standbys}): "
                         "a host's loss can take a primary and its standby")
    return Topology(
        logical_tb=logical_tb, raw_tb=bom.effective_tb, erasure=f"{k}+{m}", erasure_by_table=by_table, racks=racks,
        hosts=hosts, drives=drives,
        drive_slots_per_host=slots, drives_per_host=drives / hosts, hosts_per_rack=-(-hosts // racks) if racks else hosts,
        cells=cells, cell_racks_target=target, racks_per_cell=racks_cell, hosts_per_cell=hosts_cell,
        drives_per_cell=drives_cell, logical_tb_per_cell=logical_tb / cells, raw_tb_per_cell=bom.effective_tb / cells,
        shards_per_host=per_host, shards_per_rack=per_rack, host_losses_survived=m // per_host,
        rack_losses_survived=m // per_rack, drive_losses_survived=m if drives_cell >= stripe else 0,
        stripe_groups_per_cell=groups, p_loss_m1_drives=p_loss,
        backend=backend, per_cell=per_cell, total=total, pg_clusters_per_cell=clusters_cell, pg_clusters=clusters,
        pg_nodes=pg_nodes, pg_sync_standbys=1 if backend == "PostgreSQL" else 0,
        pg_async_standbys=st.pg_standbys - 1 if backend == "PostgreSQL" else 0, directory_clusters=directory,
        etcd_members=etcd, namespace_ranges=ranges, chunk_rows_per_cluster=rows_cluster,
        metadata_tb_per_cluster=tb_cluster, gateways=hosts, drive_servers=hosts, notes=notes)
