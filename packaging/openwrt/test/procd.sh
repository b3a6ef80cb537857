# procd.sh: the procd_* calls an init script makes, building procd's JSON with OpenWrt's real jshn.
#
# On a router /lib/functions/procd.sh (from the procd package) builds the
# service description with libubox's jshn.sh and sends it with
# `ubus call service set`. procd and ubus cannot run on a PC, so this file
# covers the calls psktun's init script uses, builds the same JSON through
# the real jshn.sh (JSHN_SH, found by test-uci.sh; it needs `jshn` in PATH),
# and prints json_dump's output instead of sending it:
#   procd_open_service NAME [SCRIPT]   procd_close_service
#   procd_open_instance [NAME]         procd_close_instance
#   procd_set_param TYPE VALUE...      procd_add_reload_trigger PACKAGE...
# Arrays (command, file, respawn, netdev, watch) are JSON arrays of
# strings, stdout/stderr booleans, reload_signal the signal's number,
# pidfile/user/group strings, env/data/limits tables of KEY=VALUE; a reload trigger
# is procd's config.change trigger that runs "/etc/init.d/NAME reload".

. "$JSHN_SH"

procd_open_service() {	# NAME [SCRIPT]
	_procd_name=$1
	_procd_instances=0
	json_init
	json_add_string name "$1"
	[ -n "${2:-}" ] && json_add_string script "$2"
	json_add_object instances
}

procd_open_instance() {	# [NAME]
	_procd_instances=$((_procd_instances + 1))
	json_add_object "${1:-instance$_procd_instances}"
}

procd_set_param() {	# TYPE VALUE...
	local type=$1 item
	shift
	case $type in
	command | file | respawn | netdev | watch)
		json_add_array "$type"
		for item in "$@"; do json_add_string "" "$item"; done
		json_close_array
		;;
	env | data | limits)
		json_add_object "$type"
		for item in "$@"; do json_add_string "${item%%=*}" "${item#*=}"; done
		json_close_object
		;;
	stdout | stderr) json_add_boolean "$type" "$1" ;;
	reload_signal | term_timeout) json_add_int "$type" "$(kill -l "$1" 2>/dev/null || echo "$1")" ;;
	pidfile | user | group) json_add_string "$type" "$1" ;;
	*) echo "procd.sh: procd_set_param $type is not covered here" >&2; return 1 ;;
	esac
}

procd_close_instance() {
	json_close_object
}

procd_add_reload_trigger() {	# PACKAGE...
	local p
	for p in "$@"; do
		json_add_array
		json_add_string "" config.change
		json_add_array
		json_add_string "" if
		json_add_array
		json_add_string "" eq
		json_add_string "" package
		json_add_string "" "$p"
		json_close_array
		json_add_array
		json_add_string "" run_script
		json_add_string "" "/etc/init.d/$_procd_name"
		json_add_string "" reload
		json_close_array
		json_close_array
		json_add_int "" 1000
		json_close_array
	done
}

procd_close_service() {
	json_close_object
	json_add_array triggers
	service_triggers
	json_close_array
	json_dump
}
