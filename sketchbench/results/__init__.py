"""Results files and what is made from them: schema, merge, report, compare, resolution analyses, plots."""
