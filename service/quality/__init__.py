"""How good a version is: scored on a labelled file (`evaluation`), judged before it serves (`promotion`), explained in
an HTML report (`report`, its figures in `report_plots`), the labels it doubts (`label_issues`), and a labelling
campaign replayed (`simulation`)."""
