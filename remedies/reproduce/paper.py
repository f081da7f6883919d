"""The paper's published numbers (Keskar et al. 2017, arXiv v2, Tables 2–4: mean, std over 5
runs), printed beside the measured ones. Literature constants, not results of this code."""

from __future__ import annotations

# net → the data set the paper trained it on, its per-sample input shape and its classes (Table 1)
DATA = {
    "F1": "MNIST",
    "F2": "TIMIT",
    "C1": "CIFAR-10",
    "C2": "CIFAR-10",
    "C3": "CIFAR-100",
    "C4": "CIFAR-100",
}
INPUT_SHAPE: dict[str, tuple[int, ...]] = {
    "F1": (1, 28, 28),
    "F2": (360,),
    "C1": (3, 32, 32),
    "C2": (3, 32, 32),
    "C3": (3, 32, 32),
    "C4": (3, 32, 32),
}
CLASSES = {"F1": 10, "F2": 1973, "C1": 10, "C2": 10, "C3": 100, "C4": 100}

# net → (train SB, train LB, test SB, test LB), each (mean, std), accuracy %
TABLE2: dict[str, tuple[tuple[float, float], ...]] = {
    "F1": ((99.66, 0.05), (99.92, 0.01), (98.03, 0.07), (97.81, 0.07)),
    "F2": ((99.99, 0.03), (98.35, 2.08), (64.02, 0.2), (59.45, 1.05)),
    "C1": ((99.89, 0.02), (99.66, 0.2), (80.04, 0.12), (77.26, 0.42)),
    "C2": ((99.99, 0.04), (99.99, 0.01), (89.24, 0.12), (87.26, 0.07)),
    "C3": ((99.56, 0.44), (99.88, 0.30), (49.58, 0.39), (46.45, 0.43)),
    "C4": ((99.10, 1.23), (99.57, 1.84), (63.08, 0.5), (57.81, 0.17)),
}

# (net, measure key) → (SB, LB), each (mean, std); Table 3: A = I, Table 4: p = 100 subspace
SHARPNESS: dict[tuple[str, str], tuple[tuple[float, float], tuple[float, float]]] = {}
_T34 = {  # T3 1e-3 SB, LB | T3 5e-4 SB, LB | T4 1e-3 SB, LB | T4 5e-4 SB, LB
    "F1": [(1.23, 0.83), (205.14, 69.52), (0.61, 0.27), (42.90, 17.14),
           (0.11, 0.00), (9.22, 0.56), (0.05, 0.00), (9.17, 0.14)],
    "F2": [(1.39, 0.02), (310.64, 38.46), (0.90, 0.05), (93.15, 6.81),
           (0.29, 0.02), (23.63, 0.54), (0.05, 0.00), (6.28, 0.19)],
    "C1": [(28.58, 3.13), (707.23, 43.04), (7.08, 0.88), (227.31, 23.23),
           (2.18, 0.23), (137.25, 21.60), (0.71, 0.15), (29.50, 7.48)],
    "C2": [(8.68, 1.32), (925.32, 38.29), (2.07, 0.86), (175.31, 18.28),
           (0.95, 0.34), (25.09, 2.61), (0.31, 0.08), (5.82, 0.52)],
    "C3": [(29.85, 5.98), (258.75, 8.96), (8.56, 0.99), (105.11, 13.22),
           (17.02, 2.20), (236.03, 31.26), (4.03, 1.45), (86.96, 27.39)],
    "C4": [(12.83, 3.84), (421.84, 36.97), (4.07, 0.87), (109.35, 16.57),
           (6.05, 1.13), (72.99, 10.96), (1.89, 0.33), (19.85, 4.12)],
}  # fmt: skip
_KEYS = ("keskar_full_eps1e-03", "keskar_full_eps5e-04", "keskar_sub100_eps1e-03",
         "keskar_sub100_eps5e-04")  # fmt: skip
for _net, _v in _T34.items():
    for _i, _key in enumerate(_KEYS):
        SHARPNESS[(_net, _key)] = (_v[2 * _i], _v[2 * _i + 1])

DISTANCE_RATIO = (3.0, 10.0)  # ‖x_SB − x₀‖ / ‖x_LB − x₀‖, "3–10" in the paper's text
