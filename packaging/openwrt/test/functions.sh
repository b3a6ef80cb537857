# functions.sh: OpenWrt's /lib/functions.sh UCI helpers for tests on a PC, over OpenWrt's real uci.
#
# /lib/functions.sh (base-files) is not built here, so this file gives its
# calls the same meanings (config_load, config_get, config_get_bool,
# config_foreach, config_list_foreach), but the reading is done as on a
# router: `uci -S -n export PACKAGE` (the real uci(1), first in PATH; its
# config directory from UCI_CONFIG_DIR) and the output evaluated with config,
# option and list callbacks that fill CONFIG_<section>_<option> variables; a
# list is also kept item by item (CONFIG_<section>_<option>_ITEM<n>, _LENGTH).
# As on a router, uci's errors go to /dev/null here and config_load returns
# uci's exit status; what uci could parse is loaded.

CONFIG_SECTIONS=
CONFIG_NUM_SECTIONS=0
CONFIG_SECTION=

package() {
	return 0
}

config() {	# TYPE [NAME]
	local cfgtype="$1" name="${2:-}"
	CONFIG_NUM_SECTIONS=$((CONFIG_NUM_SECTIONS + 1))
	[ -n "$name" ] || name=$(printf 'cfg%d' "$CONFIG_NUM_SECTIONS")	# uci -n names them all
	CONFIG_SECTION=$name
	CONFIG_SECTIONS="$CONFIG_SECTIONS $name"
	eval "CONFIG_${name}_TYPE=\$cfgtype"
}

option() {	# NAME VALUE
	eval "CONFIG_${CONFIG_SECTION}_$1=\$2"
}

list() {	# NAME VALUE
	local n
	eval "n=\$((\${CONFIG_${CONFIG_SECTION}_$1_LENGTH:-0} + 1))"
	eval "CONFIG_${CONFIG_SECTION}_$1_LENGTH=\$n"
	eval "CONFIG_${CONFIG_SECTION}_$1_ITEM${n}=\$2"
	eval "CONFIG_${CONFIG_SECTION}_$1=\"\${CONFIG_${CONFIG_SECTION}_$1:+\${CONFIG_${CONFIG_SECTION}_$1} }\$2\""
}

config_load() {	# PACKAGE
	local data rc
	CONFIG_SECTIONS=
	CONFIG_NUM_SECTIONS=0
	CONFIG_SECTION=
	data=$(uci ${UCI_CONFIG_DIR:+-c "$UCI_CONFIG_DIR"} -S -n export "$1" 2>/dev/null)
	rc=$?
	[ "$rc" != 0 ] || [ -z "$data" ] || eval "$data"
	return "$rc"
}

# config_get VAR SECTION OPTION [DEFAULT]  or  config_get SECTION OPTION (prints)
config_get() {
	case $# in
	2) eval "printf '%s\n' \"\${CONFIG_${1}_${2}:-}\"" ;;
	*) eval "$1=\${CONFIG_${2}_${3}:-\${4:-}}" ;;
	esac
}

# config_get_bool VAR SECTION OPTION [DEFAULT]: 1 or 0
config_get_bool() {
	local _tmp
	config_get _tmp "$2" "$3" "${4:-}"
	case "$_tmp" in
	1 | on | true | yes | enabled) _tmp=1 ;;
	0 | off | false | no | disabled) _tmp=0 ;;
	*) _tmp="${4:-}" ;;
	esac
	eval "$1=\$_tmp"
}

# config_foreach FUNCTION [TYPE] [ARGS...]: FUNCTION SECTION ARGS... for each section (of TYPE)
config_foreach() {
	local ___function="$1" ___type="${2:-}" section cfgtype
	[ "$#" -ge 1 ] && shift
	[ "$#" -ge 1 ] && shift
	for section in $CONFIG_SECTIONS; do
		config_get cfgtype "$section" TYPE
		[ -n "$___type" ] && [ "$cfgtype" != "$___type" ] && continue
		eval "$___function \"\$section\" \"\$@\""
	done
}

# config_list_foreach SECTION OPTION FUNCTION [ARGS...]: FUNCTION ITEM ARGS... for each item
config_list_foreach() {
	local section="$1" option="$2" function="$3" len val c=1
	shift 3
	config_get len "$section" "${option}_LENGTH"
	[ -z "$len" ] && return 0
	while [ "$c" -le "$len" ]; do
		config_get val "$section" "${option}_ITEM$c"
		eval "$function \"\$val\" \"\$@\""
		c=$((c + 1))
	done
}
