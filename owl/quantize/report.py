"""The quality cost of quantization, measured on the user's own text.

For each quantized child of one model: size, bits per weight, perplexity ± its error,
KL divergence from the parent and top-1 agreement with it (owl.evals), and decode speed.
Written as a Markdown table with a PNG plot (quality against size) next to it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from owl.config import Settings
from owl.store import Manifest, Store

DECODE_PROMPT = "Once upon a time"


@dataclass(frozen=True)
class ReportRow:
    name: str
    type: str
    size_bytes: int
    bits_per_weight: float | None
    perplexity: float
    perplexity_stderr: float
    kld_mean: float
    kld_p99: float
    top1_agreement: float
    decode_tokens_per_s: float


def decode_speed(manifest: Manifest, *, store: Store, settings: Settings, tokens: int) -> float:
    """Greedy decode tokens per second, after the prompt (the engine's own path)."""
    from owl import engine

    model = engine.load(manifest, store=store, settings=settings)
    try:
        params = model.sampling(temperature=0, max_tokens=tokens, repeat_penalty=1.0)
        first: float | None = None
        generated = 0
        for delta in model.complete(DECODE_PROMPT, params):
            if first is None:
                first = time.perf_counter()  # the prompt is done once the first token is out
            if delta.usage is not None:
                generated = delta.usage.completion_tokens
        elapsed = time.perf_counter() - (first or time.perf_counter())
        return (generated - 1) / elapsed if generated > 1 and elapsed > 0 else 0.0
    finally:
        model.close()


def _bits(manifest: Manifest) -> float | None:
    parameters = manifest.info.get("parameters")
    return round(manifest.size * 8 / parameters, 3) if parameters else None


def quality_report(
    parent: Manifest,
    children: list[Manifest],
    *,
    store: Store,
    settings: Settings,
    text: Path,
    ctx: int = 512,
    decode_tokens: int = 64,
) -> list[ReportRow]:
    """One row for the parent (the reference) and one per child, measured on `text`."""
    from owl.evals.kld import kl_divergence

    rows: list[ReportRow] = []
    for child in children:
        result = kl_divergence(
            child, reference=parent, text=text, ctx=ctx, store=store, settings=settings
        )
        if not rows:
            rows.append(
                ReportRow(
                    name=parent.display_name,
                    type=str(parent.info.get("quantization") or "reference"),
                    size_bytes=parent.size,
                    bits_per_weight=_bits(parent),
                    perplexity=result.reference_perplexity,
                    perplexity_stderr=result.reference_stderr,
                    kld_mean=0.0,
                    kld_p99=0.0,
                    top1_agreement=1.0,
                    decode_tokens_per_s=decode_speed(
                        parent, store=store, settings=settings, tokens=decode_tokens
                    ),
                )
            )
        rows.append(
            ReportRow(
                name=child.display_name,
                type=str(
                    child.info.get("quantize", {}).get("type") or child.info.get("quantization")
                ),
                size_bytes=child.size,
                bits_per_weight=_bits(child),
                perplexity=result.perplexity,
                perplexity_stderr=result.perplexity_stderr,
                kld_mean=result.kld_mean,
                kld_p99=result.kld_p99,
                top1_agreement=result.top1_agreement,
                decode_tokens_per_s=decode_speed(
                    child, store=store, settings=settings, tokens=decode_tokens
                ),
            )
        )
    return rows


def markdown(rows: list[ReportRow], *, text: Path, ctx: int) -> str:
    """The report's table, with what it was measured on."""
    lines = [
        f"# Quantization report: {rows[0].name}",
        "",
        f"Measured on `{text.name}` with a context of {ctx} tokens; KL divergence and top-1 "
        f"agreement are against {rows[0].name} ({rows[0].type}).",
        "",
        "| model | type | size (MB) | bits/weight | perplexity ± err | KLD mean | KLD p99 "
        "| top-1 agreement | decode tok/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        bits = f"{row.bits_per_weight:.2f}" if row.bits_per_weight else "-"
        lines.append(
            f"| {row.name} | {row.type} | {row.size_bytes / 1e6:.1f} | {bits} "
            f"| {row.perplexity:.3f} ± {row.perplexity_stderr:.3f} | {row.kld_mean:.5f} "
            f"| {row.kld_p99:.4f} | {row.top1_agreement:.2%} | {row.decode_tokens_per_s:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[ReportRow], path: Path) -> None:
    """Perplexity (with its error) and KL divergence against size, one point per type."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    sizes = [row.size_bytes / 1e6 for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.errorbar(
        sizes, [row.perplexity for row in rows],
        yerr=[row.perplexity_stderr for row in rows], fmt="o",
    )  # fmt: skip
    right.plot(sizes, [row.kld_mean for row in rows], "o")
    for row, size in zip(rows, sizes, strict=True):
        left.annotate(row.type, (size, row.perplexity), textcoords="offset points", xytext=(4, 4))
        right.annotate(row.type, (size, row.kld_mean), textcoords="offset points", xytext=(4, 4))
    left.set(xlabel="size (MB)", ylabel="perplexity (lower is better)", title="Perplexity")
    right.set(xlabel="size (MB)", ylabel="mean KL divergence", title="KL divergence from reference")
    figure.suptitle(f"Quality against size: {rows[0].name}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(rows: list[ReportRow], path: Path, *, text: Path, ctx: int) -> tuple[Path, Path]:
    """Write the table to `path` (.md) and the plot next to it (.png); both paths."""
    path.write_text(markdown(rows, text=text, ctx=ctx), encoding="utf-8")
    image = path.with_suffix(".png")
    plot(rows, image)
    return path, image


def record_quality(
    rows: list[ReportRow], children: list[Manifest], *, store: Store, text: Path, ctx: int
) -> None:
    """Keep each child's measured cost in its manifest, where `owl fit` finds it."""
    reference = rows[0]
    for row, child in zip(rows[1:], children, strict=True):
        quality = {
            "perplexity": row.perplexity,
            "reference_perplexity": reference.perplexity,
            "kld_mean": row.kld_mean,
            "top1_agreement": row.top1_agreement,
            "text": text.name,
            "ctx": ctx,
        }
        store.save(child.model_copy(update={"info": {**child.info, "quality": quality}}))


def rows_json(rows: list[ReportRow]) -> list[dict]:
    return [asdict(row) for row in rows]
