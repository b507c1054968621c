#!/usr/bin/python3
"""Reference split sizes for tests/test-classification-dataset.c.

Run from the repository root:

    /usr/bin/python3 tests/golden/classes/make_goldens.py

The book's chapter 6 (rasbt/LLMs-from-scratch, ch06/01_main-chapter-code)
splits the shuffled, balanced SMS data set by position:

    train_end = int(len(df) * train_frac)
    validation_end = train_end + int(len(df) * validation_frac)
    train_df = df[:train_end]
    validation_df = df[train_end:validation_end]
    test_df = df[validation_end:]

int() of a float product truncates: 90 * 0.7 is 62.99999999999999, so 90
examples give 62 training ones, not 63. This script applies the same code to
data sets of every size from 0 to 1199 (and 1,494 and 5,574) with the book's
fractions, and of every seventh size with others, and writes

  tests/golden/classes/split-sizes.txt   one line per case:
                                         "n train_frac validation_frac
                                          train validation test"
"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))


def random_split(n, train_frac, validation_frac):
    """The book's random_split, on the sizes only (the shuffle does not change them)."""
    df = list(range(n))
    train_end = int(len(df) * train_frac)
    validation_end = train_end + int(len(df) * validation_frac)
    return (len(df[:train_end]), len(df[train_end:validation_end]),
            len(df[validation_end:]))


def main():
    lines = []
    cases = ((0.7, 0.1, list(range(1200)) + [1494, 5574]),
             (0.8, 0.05, list(range(0, 1200, 7))))
    for train_frac, validation_frac, sizes_n in cases:
        for n in sizes_n:
            sizes = random_split(n, train_frac, validation_frac)
            lines.append("%d %r %r %d %d %d" % ((n, train_frac, validation_frac) + sizes))
    with open(os.path.join(HERE, "split-sizes.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    # The book's figure: 747 spam + 747 ham.
    assert random_split(1494, 0.7, 0.1) == (1045, 149, 300)


if __name__ == "__main__":
    main()
