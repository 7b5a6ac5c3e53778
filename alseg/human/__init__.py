"""People in the loop (``labeling.oracle=human``): the round's queries are written to the
run dir, shown in Label Studio (``alseg export``), and the answers come back
(``alseg import``) before ``alseg resume`` trains the next round."""
