# The copier under injected libaio faults (snapshots/copy.c).
WRAP_test_copy_fault := io_getevents io_submit
