"""SigmaSim: stored history through the live flow (`sim`), a paper broker for its alerts (`broker`), and the parity
report that holds a replay against the research backtest (`parity`)."""
