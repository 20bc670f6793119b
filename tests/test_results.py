"""The docs/results.md table lists every model per split, then the baselines once per split."""

from captioning.report import update_section
from captioning.results import results_table


def test_results_table_rows_and_values(tmp_path):
    m = {"test": {"Bleu_4": 0.5, "acc_colour": 0.9}, "test_novel": {"Bleu_4": 0.25},
         "nearest_neighbour/test": {"Bleu_4": 0.4}, "nearest_neighbour/test_novel": {"Bleu_4": 0.1}, "_run": {}}
    table = results_table({"rnn": m, "lstm": {**m, "test": {"Bleu_4": 0.75}}})
    rows = [line for line in table.splitlines()[2:]]
    assert [r.split(" | ")[:2] for r in rows] == [["| rnn", "test"], ["| lstm", "test"], ["| rnn", "test_novel"],
                                                  ["| lstm", "test_novel"], ["| nearest-neighbour", "test"],
                                                  ["| nearest-neighbour", "test_novel"]]
    assert "| 0.750 |" in rows[1] and "| 0.900 |" in rows[0] and "| 0.400 |" in rows[4]
    # sections of a shared report are replaced in place, others kept
    out = tmp_path / "r.md"
    update_section(out, "a", "first")
    update_section(out, "b", "second")
    update_section(out, "a", "third")
    text = out.read_text()
    assert "third" in text and "second" in text and "first" not in text
    assert text.index("third") < text.index("second")


def test_results_table_adds_the_human_rows_last():
    m = {"test": {"Bleu_4": 0.5}, "nearest_neighbour/test": {"Bleu_4": 0.4}, "_run": {}}
    rows = results_table({"lstm": m}, human={"test": {"Bleu_1": 0.9, "Bleu_4": 0.6}}).splitlines()[2:]
    assert rows[-1].startswith("| human (leave-one-out) | test | 0.900 | - | - | 0.600 | - |")
