# A yardstick, never a dependency: the distillation step of train-bench.mjs in eager PyTorch, same shape
# (Llama: RMSNorm, RoPE, causal softmax attention, SwiGLU MLP, tied embedding/head), same step: teacher
# forward without gradients, student forward, KL(teacher || student) at temperature 1 averaged over tokens,
# backward, gradient clipping to norm 1, AdamW (betas 0.9/0.95, weight decay 0.01). Prints one JSON line with
# the wall seconds of each timed step (after `--warmup` untimed steps). Run by train-bench.mjs through
# child_process; skipped there with the reason when torch is missing (Debian: apt-get install python3-torch
# libopenblas0-pthread, for /usr/bin/python3).
import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
for k, d in [("dim", 512), ("layers", 8), ("heads", 8), ("hidden", 1376), ("vocab", 32000),
             ("batch", 4), ("seq", 256), ("steps", 3), ("warmup", 1), ("threads", 0)]:
    p.add_argument(f"--{k}", type=int, default=d)
a = p.parse_args()
torch.set_num_threads(a.threads or os.cpu_count())
torch.manual_seed(0)


class RMSNorm(torch.nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w


def rope_tables(T, hd, theta=10000.0):
    inv = 1.0 / theta ** (torch.arange(0, hd, 2).float() / hd)
    f = torch.outer(torch.arange(T).float(), inv)
    return f.cos(), f.sin()


def rope(x, cos, sin):  # x: [B, H, T, hd], rotate-half convention (HF Llama)
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


class Block(torch.nn.Module):
    def __init__(self, d, h, ff):
        super().__init__()
        self.h = h
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)
        self.q, self.k, self.v, self.o = (torch.nn.Linear(d, d, bias=False) for _ in range(4))
        self.gate, self.up = torch.nn.Linear(d, ff, bias=False), torch.nn.Linear(d, ff, bias=False)
        self.down = torch.nn.Linear(ff, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, D = x.shape
        hd = D // self.h
        y = self.n1(x)
        q, k, v = (m(y).view(B, T, self.h, hd).transpose(1, 2) for m in (self.q, self.k, self.v))
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.o(y)
        y = self.n2(x)
        return x + self.down(F.silu(self.gate(y)) * self.up(y))


class Llama(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(a.vocab, a.dim)
        torch.nn.init.normal_(self.emb.weight, std=0.02)
        self.blocks = torch.nn.ModuleList(Block(a.dim, a.heads, a.hidden) for _ in range(a.layers))
        self.norm = RMSNorm(a.dim)

    def forward(self, ids, cos, sin, mask):
        x = self.emb(ids)
        for b in self.blocks:
            x = b(x, cos, sin, mask)
        return self.norm(x) @ self.emb.weight.t()  # tied head


teacher, student = Llama(), Llama()
teacher.requires_grad_(False)
opt = torch.optim.AdamW(student.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.01)
cos, sin = rope_tables(a.seq, a.dim // a.heads)
mask = torch.full((a.seq, a.seq), float("-inf")).triu(1)


def step():
    ids = torch.randint(0, a.vocab, (a.batch, a.seq))
    with torch.no_grad():
        t = teacher(ids, cos, sin, mask).view(-1, a.vocab).log_softmax(-1)
    s = student(ids, cos, sin, mask).view(-1, a.vocab).log_softmax(-1)
    loss = F.kl_div(s, t, log_target=True, reduction="batchmean")  # KL(teacher || student) per token, T = 1
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
    opt.step()
    return loss.item()


for _ in range(a.warmup):
    step()
times = []
for _ in range(a.steps):
    t0 = time.perf_counter()
    loss = step()
    times.append(time.perf_counter() - t0)

def blas():  # the BLAS library actually mapped (Debian's torch links the libblas.so.3 alternative)
    try:
        with open("/proc/self/maps") as f:
            libs = {l.split()[-1] for l in f if "blas" in l.lower() and "/" in l}
        return ", ".join(sorted(os.path.realpath(x) for x in libs)) or "unknown"
    except OSError:
        return "unknown"


print(json.dumps({"seconds": times, "loss": loss, "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "blas": blas()}))
