"""The Markdown table ``cyclegan bench`` prints."""

from __future__ import annotations


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

COLUMNS = (("mode", 9), ("size", 5), ("batch", 5), ("precision", 9), ("ch-last", 7), ("compile", 7), ("wino", 4),
            ("ms/iter", 9), ("it/s", 8), ("img/s", 8), ("x base", 6), ("peak MiB", 8), ("+MiB", 6), ("GFLOP/iter", 10),
            ("GFLOP/s", 9), ("% peak", 6))


def _fmt(x: float, digits: int = 3) -> str:
    """A number with about ``digits`` significant figures, without exponent notation."""
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - int(f"{abs(x):e}".split("e")[1]))
    return f"{x:.{decimals}f}"


def row_cells(row: dict) -> list[str]:
    precision = f"auto:{row['precision']}" if row.get("precision_auto") else row["precision"]
    cells = [row["mode"], str(row["size"]), str(row["batch_size"]), precision,
             "on" if row["channels_last"] else "off",
             ("auto:" if row.get("compile_auto") else "") + ("on" if row["compile"] else "off"),
             "on" if row.get("winograd") else "off" if row["mode"] == "translate" else "-"]
    if row.get("error"):
        return cells + [f"error: {row['error']}"]
    speedup = row.get("speedup_vs_baseline")
    flops = row.get("flops_per_iter")
    fraction = row.get("fraction_of_peak")
    return cells + [
        _fmt(row["sec_per_iter"] * 1e3), _fmt(row["iters_per_sec"]), _fmt(row["images_per_sec"]),
        f"{speedup:.2f}" if speedup is not None else "-",
        f"{row['peak_memory_bytes'] / 2**20:.0f}", f"{row['memory_growth_bytes'] / 2**20:.0f}",
        _fmt(flops / 1e9) if flops else "-",
        _fmt(row["achieved_flops_per_sec"] / 1e9) if flops else "-",
        f"{100 * fraction:.1f}" if fraction is not None else "-",
    ]


def table_line(cells: list[str]) -> str:
    if len(cells) < len(COLUMNS):  # an error row: the message takes the rest of the line
        fixed = [f"{c:>{w}}" for c, (_, w) in zip(cells[:-1], COLUMNS)]
        return " ".join(fixed) + "  " + cells[-1]
    return " ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, COLUMNS))


def markdown_table(rows: list[dict]) -> str:
    head = [name for name, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        cells = row_cells(row)
        if len(cells) < len(head):
            cells = cells[:-1] + [cells[-1].replace("|", "\\|")] + [""] * (len(head) - len(cells))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
