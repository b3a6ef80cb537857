# psktun-uci.sh: turn the UCI configuration /etc/config/psktun into psktund's libconfig file.
#
# Sourced by /etc/init.d/psktun (and by packaging/openwrt/test-uci.sh) after
# /lib/functions.sh and `config_load psktun`; runs uci(1) to check the file.
# Everything is checked before the file is replaced, so a bad UCI change
# leaves the last good file in place.
#
#   psktun_uci_config OUT   prints the path psktund is to read: the main
#                           section's native_config if set, else OUT after
#                           writing it (mode 0600). Returns 1 on an error.

# A libconfig string: double quotes, with \ and " escaped.
psktun_uci_str() {
	printf '"%s"' "$(printf '%s' "$1" | sed -e 's/[\\"]/\\&/g')"
}

psktun_uci_err() {
	echo "psktun: /etc/config/psktun: $*" >&2
	psktun_uci_failed=1
}

# psktun_uci_uint WHAT VALUE: VALUE if it is a plain decimal number, else an error.
psktun_uci_uint() {
	case $2 in
	'' | *[!0-9]*) psktun_uci_err "$1 must be a number, not '$2'" ;;
	esac
}

psktun_uci_setting() {	# INDENT NAME VALUE: a string setting if VALUE is not empty
	[ -n "$3" ] && printf '%s%s = %s;\n' "$1" "$2" "$(psktun_uci_str "$3")"
	return 0
}

psktun_uci_plugin_option() {	# ITEM: "key=value" of `list plugin_option`
	local key="${1%%=*}" value="${1#*=}"
	case $1 in
	*=*) ;;
	*) psktun_uci_err "plugin_option '$1' is not key=value"; return 0 ;;
	esac
	case $key in
	'' | [!A-Za-z]* | *[!-A-Za-z0-9_]*)
		psktun_uci_err "plugin_option key '$key' is not a name"; return 0 ;;
	esac
	printf '      %s = %s;\n' "$key" "$(psktun_uci_str "$value")"
}

psktun_uci_tunnel() {	# SECTION
	local s="$1" enabled name plugin accept connect n_opts
	config_get_bool enabled "$s" enabled 1
	[ "$enabled" = 1 ] || return 0
	config_get name "$s" name "$s"
	config_get plugin "$s" plugin
	config_get accept "$s" accept
	config_get connect "$s" connect
	config_get n_opts "$s" plugin_option_LENGTH
	[ -n "$accept" ] || psktun_uci_err "tunnel '$name' has no accept address"
	[ -n "$connect" ] || psktun_uci_err "tunnel '$name' has no connect address"
	[ "$psktun_uci_tunnels" -gt 0 ] && echo "  },"
	psktun_uci_tunnels=$((psktun_uci_tunnels + 1))
	echo "  {"
	psktun_uci_setting "    " name "$name"
	psktun_uci_setting "    " plugin "$plugin"
	psktun_uci_setting "    " accept "$accept"
	psktun_uci_setting "    " connect "$connect"
	if [ "${n_opts:-0}" -gt 0 ]; then
		echo "    options = {"
		config_list_foreach "$s" plugin_option psktun_uci_plugin_option
		echo "    };"
	fi
}

psktun_uci_meter() {	# SECTION
	local s="$1" enabled identity source
	config_get_bool enabled "$s" enabled 1
	[ "$enabled" = 1 ] || return 0
	config_get identity "$s" identity
	config_get source "$s" source
	if [ -z "$identity" ] || [ -z "$source" ]; then
		psktun_uci_err "meter section '$s' needs identity and source"
		return 0
	fi
	[ "$psktun_uci_meters" -gt 0 ] && echo ","
	psktun_uci_meters=$((psktun_uci_meters + 1))
	printf '  { identity = %s; source = %s; }' \
		"$(psktun_uci_str "$identity")" "$(psktun_uci_str "$source")"
}

# The whole file on stdout; psktun_uci_failed=1 if anything was wrong.
psktun_uci_write() {
	local mode keys control plugin_dir v opt meters
	config_get mode main mode gateway
	config_get keys main keys /etc/psktun/keys.psk
	config_get control main control /var/run/psktun/control
	config_get plugin_dir main plugin_dir
	case $mode in
	gateway | terminator) ;;
	*) psktun_uci_err "mode must be gateway or terminator, not '$mode'" ;;
	esac
	case $keys in
	/*) ;;
	*) psktun_uci_err "keys must be an absolute path, not '$keys'" ;;
	esac

	echo "# Written from /etc/config/psktun by /etc/init.d/psktun: edit that file, not this one."
	psktun_uci_setting "" mode "$mode"
	psktun_uci_setting "" keys "$keys"
	psktun_uci_setting "" control "$control"
	psktun_uci_setting "" plugin_dir "$plugin_dir"

	echo
	echo "tunnels = ("
	psktun_uci_tunnels=0
	config_foreach psktun_uci_tunnel tunnel
	[ "$psktun_uci_tunnels" -gt 0 ] && echo "  }"
	echo ");"
	[ "$psktun_uci_tunnels" -gt 0 ] || psktun_uci_err "no enabled tunnel section"

	psktun_uci_meters=0
	meters=$(config_foreach psktun_uci_meter meter 2>/dev/null; echo x)
	meters=${meters%x}
	# config_foreach ran in a subshell: count and check again here.
	config_foreach psktun_uci_meter meter >/dev/null
	if [ "$psktun_uci_meters" -gt 0 ]; then
		echo
		echo "meters = ("
		printf '%s\n' "$meters"
		echo ");"
	fi

	v=
	for opt in priority mtu retransmit_ms handshake_timeout_s idle_timeout_s \
		max_sessions max_handshakes queue_len queue_bytes handshake_rate handshake_burst \
		path_timeout_s; do
		config_get v main "$opt"
		[ -n "$v" ] || continue
		if [ -z "$psktun_uci_dtls" ]; then
			echo
			echo "dtls = {"
			psktun_uci_dtls=1
		fi
		if [ "$opt" = priority ]; then
			psktun_uci_setting "  " priority "$v"
		else
			psktun_uci_uint "$opt" "$v"
			printf '  %s = %s;\n' "$opt" "$v"
		fi
	done
	[ -n "$psktun_uci_dtls" ] && echo "};"
	return 0
}

psktun_uci_config() {	# OUT
	local out="$1" native old_umask err
	# config_load reads what uci can parse and drops its errors (uci -S): a
	# line uci refuses would silently lose settings. Strict, it says which.
	if ! err=$(uci ${UCI_CONFIG_DIR:+-c "$UCI_CONFIG_DIR"} export psktun 2>&1 >/dev/null); then
		echo "psktun: /etc/config/psktun: ${err:-uci cannot read it}" >&2
		return 1
	fi
	config_get native main native_config
	if [ -n "$native" ]; then
		printf '%s\n' "$native"
		return 0
	fi
	psktun_uci_failed=0
	psktun_uci_dtls=
	mkdir -p "$(dirname "$out")" || return 1
	old_umask=$(umask)
	umask 077
	psktun_uci_write >"$out.new"
	umask "$old_umask"
	if [ "$psktun_uci_failed" != 0 ]; then
		rm -f "$out.new"
		return 1
	fi
	mv -f "$out.new" "$out" || return 1
	printf '%s\n' "$out"
}
