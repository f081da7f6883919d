"""`remedies report`'s side-by-side measures on a real (in-memory) Optuna study."""

from __future__ import annotations

import optuna

from remedies.results.measures_report import measures_section, suspect_flags, suspect_metrics

DETAILS = [
    {"key": "keskar_full_eps1e-03", "value": 3.0, "suspect": False, "suspect_why": []},
    {"key": "lambda_max", "value": 0.5, "suspect": True, "suspect_why": ["Lanczos stopped"]},
]


def test_flags_and_metrics_from_details() -> None:
    assert suspect_flags(DETAILS) == {"lambda_max": ["Lanczos stopped"]}
    assert suspect_metrics(DETAILS) == {
        "suspect_keskar_full_eps1e-03": 0.0,
        "suspect_lambda_max": 1.0,
    }


def test_section_marks_suspect_values_and_reports_measure_agreement() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    # keskar rises with the trial number, lambda_max falls: the two disagree completely
    for i in range(4):
        t = study.ask()
        t.set_user_attr(
            "sharpness", {"keskar_full_eps1e-03": 10.0 * (i + 1), "lambda_max": 4.0 - i}
        )
        t.set_user_attr("sharpness_suspect", {"lambda_max": ["why"]} if i == 2 else {})
        study.tell(t, [0.5, 1.0])
    text = measures_section(study)
    lines = text.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.strip().startswith("trial"))
    rows = lines[head + 1 : head + 5]
    assert len(rows) == 4 and "*" in rows[2] and "*" not in rows[0] + rows[1] + rows[3]
    assert "keskar_full_eps1e-03 vs lambda_max: τ = -1.00 (n = 4)" in text
    assert "1 value(s) flagged suspect" in text and "trial 2 lambda_max: why" in text
