"""The model: a five-year business case, laid out like a spreadsheet.

Each uncertain input is one cell with a distribution; the formulas below
turn one draw of every cell into the outputs. `scenario(seed)` evaluates the
whole sheet once with its own random generator seeded by `seed`, so scenario
number 41 is the same scenario on every machine and in every block.
"""

import random

MONTHS = 60
DISCOUNT_RATE = 0.08  # a year

# Inputs: name -> (distribution, parameters, unit). Drawn in this order.
INPUTS = {
    "investment": ("triangular", (80_000, 100_000, 150_000), "EUR, up front"),
    "price": ("normal", (22.0, 1.5), "EUR per unit"),
    "unit_cost": ("triangular", (10.0, 12.0, 16.0), "EUR per unit"),
    "units_month1": ("triangular", (500, 800, 1400), "units in the first month on sale"),
    "monthly_growth": ("normal", (0.015, 0.01), "growth of volume per month"),
    "fixed_month": ("normal", (8_000, 800), "EUR per month"),
    "launch_delay": ("choice", (0, 0, 0, 1, 1, 2, 3, 4), "months before the first sale"),
}
DEMAND_NOISE = 0.15  # each month's volume times lognormal(0, 0.15)

OUTPUTS = ("npv", "profit", "payback_month")


def draw(rng: random.Random) -> dict:
    cells = {}
    for name, (dist, p, _unit) in INPUTS.items():
        if dist == "triangular":
            low, mode, high = p
            cells[name] = rng.triangular(low, high, mode)
        elif dist == "normal":
            cells[name] = rng.gauss(*p)
        elif dist == "choice":
            cells[name] = rng.choice(p)
    return cells


def scenario(seed: int) -> tuple[float, float, int]:
    """(net present value, total profit, payback month or MONTHS + 1) of one scenario."""
    rng = random.Random(seed)
    c = draw(rng)
    monthly_rate = (1 + DISCOUNT_RATE) ** (1 / 12) - 1
    npv = -c["investment"]
    cumulative = -c["investment"]
    profit = -c["investment"]
    payback = MONTHS + 1
    for m in range(1, MONTHS + 1):
        noise = rng.lognormvariate(0.0, DEMAND_NOISE)
        on_sale = m - c["launch_delay"]
        units = c["units_month1"] * (1 + c["monthly_growth"]) ** (on_sale - 1) * noise if on_sale >= 1 else 0.0
        revenue = units * c["price"]
        cost = units * c["unit_cost"] + c["fixed_month"]
        cash = revenue - cost
        profit += cash
        npv += cash / (1 + monthly_rate) ** m
        cumulative += cash
        if payback > MONTHS and cumulative >= 0:
            payback = m
    return npv, profit, payback
