"""Student t quantiles without scipy: exact tables to 30 degrees of freedom, then an expansion.

The gate (``gate.py``) needs the one-sided 0.95 quantile for its band; the 0.975 one is kept for
two-sided intervals. Beyond df 30 the Cornish-Fisher expansion around the normal quantile is
within 1e-4 of the exact value.
"""

from __future__ import annotations

Z_975 = 1.959963984540054
Z_95 = 1.6448536269514722
# Student t, 0.975 quantile, df = 1..30 (four decimals; beyond 30 the expansion below is as good).
_T_975 = (
    *(12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281),
    *(2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860),
    *(2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423),
)
# Student t, 0.95 quantile, df = 1..30.
_T_95 = (
    *(6.3138, 2.9200, 2.3534, 2.1318, 2.0150, 1.9432, 1.8946, 1.8595, 1.8331, 1.8125),
    *(1.7959, 1.7823, 1.7709, 1.7613, 1.7531, 1.7459, 1.7396, 1.7341, 1.7291, 1.7247),
    *(1.7207, 1.7171, 1.7139, 1.7109, 1.7081, 1.7056, 1.7033, 1.7011, 1.6991, 1.6973),
)


def t_975(df: int) -> float:
    """The Student t 0.975 quantile: exact table to df 30, then the Cornish-Fisher expansion
    around the normal quantile (its error is below 1e-4 there), so no scipy is needed."""
    return _t(df, _T_975, Z_975)


def t_95(df: int) -> float:
    """The Student t 0.95 quantile (the gate is one-sided: only a loss can regress), as :func:`t_975`."""
    return _t(df, _T_95, Z_95)


def _t(df: int, table: tuple[float, ...], z: float) -> float:
    if df < 1:
        raise ValueError(f"df={df}: at least 1 degree of freedom")
    if df <= len(table):
        return table[df - 1]
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )
