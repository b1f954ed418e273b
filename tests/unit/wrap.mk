# The copier under injected libaio faults (snapshots/copy.c).
WRAP_test_copy_fault := io_getevents io_submit
# dm/dm.c's bookkeeping over a fake libdevmapper.
WRAP_test_dm_mock := dm_task_create dm_task_destroy dm_task_run dm_task_get_errno \
	dm_task_set_name dm_task_set_uuid dm_task_set_cookie dm_udev_wait dm_task_no_flush \
	dm_task_skip_lockfs dm_task_add_target dm_task_get_info dm_task_get_uuid dm_task_get_name \
	dm_task_set_sector dm_task_set_message dm_task_set_ro dm_task_query_inactive_table \
	dm_task_get_message_response dm_get_next_target
# State files, retention order and directory fsyncs over a mocked pool delete
# and fsync (tests/unit/test_state.c).
WRAP_test_state := dmr_thin_delete_batch fsync dmr_dm_info
# The point job over a mocked pool (tests/unit/test_point.c).
WRAP_test_point := dmr_thin_snapshot_group dmr_pool_status dmr_dm_info
# point send over a faked delta tool, data path and devices
# (tests/unit/test_send.c).
WRAP_test_send := dmr_delta_extents dmr_delta_release_stale dmr_xfer_read dmr_thin_activate \
	dmr_dm_info dmr_dm_remove_group
# Recovery at start over a fake kernel: devices, tables, the pool
# (tests/unit/test_recovery.c).
WRAP_test_recovery := dmr_dm_info dmr_dm_create dmr_dm_create_group dmr_dm_remove_group dmr_dm_check_uuid dmr_dm_owned dmr_dm_list dmr_dm_table dmr_dm_load \
	dmr_dm_clear dmr_dm_suspend dmr_dm_resume dmr_dm_resume_retry dmr_dm_remove \
	dmr_dm_rename dmr_pool_status dmr_pool_delete_thin dmr_thin_delete_batch \
	dmr_thin_activate dmr_thin_table dmr_thin_table_id
# dm/dm.c's group create and remove over a fake libdevmapper that keeps
# devices and a udev cookie's count (tests/unit/test_dm_group.c).
WRAP_test_dm_group := dm_task_create dm_task_destroy dm_task_set_name dm_task_set_uuid \
	dm_task_set_ro dm_task_add_target dm_task_set_cookie dm_task_run dm_task_get_errno \
	dm_udev_wait
# dm/batch.c's threads and rollback over faked control descriptors and
# suspend/resume ioctls (tests/unit/test_batch.c).
WRAP_test_batch := dmr_dm_ctl_open dmr_dm_ctl_close dmr_dm_ctl_suspend dmr_dm_ctl_resume
# snapshots/thin.c's consistency group over faked suspend/resume ioctls and
# pool messages (tests/unit/test_thin_group.c).
WRAP_test_thin_group := dmr_dm_ctl_open dmr_dm_ctl_close dmr_dm_ctl_suspend dmr_dm_ctl_resume \
	dmr_pool_message dmr_pool_set_transaction dmr_pool_delete_thin
# The stream reader's allocations, watched for the bound whatever a stream
# claims (tests/unit/test_stream.c).
WRAP_test_stream := malloc calloc realloc
# dmr_delta_extents over fake tools and a fake pool's messages and status,
# xfer under injected libaio faults (tests/unit/test_delta.c).
WRAP_test_delta := dmr_pool_message dmr_pool_status io_submit io_getevents
