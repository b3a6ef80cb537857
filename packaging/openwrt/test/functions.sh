# functions.sh: stand-ins for OpenWrt's /lib/functions.sh UCI helpers, for tests on a PC.
#
# The same calls and meanings as OpenWrt's (config_load, config_get,
# config_get_bool, config_foreach, config_list_foreach), over a small parser
# of UCI files in $UCI_CONFIG_DIR (default /etc/config) instead of uci(1).
# Values live in CONFIG_<section>_<option> variables as on OpenWrt; a list
# is also kept item by item (CONFIG_<section>_<option>_ITEM<n>, _LENGTH).

CONFIG_SECTIONS=
CONFIG_NUM_SECTIONS=0

# UCI file -> lines "config<TAB>type<TAB>name", "option<TAB>name<TAB>value",
# "list<TAB>name<TAB>value"; quotes (' or ") removed, comments dropped.
_uci_parse() {
	awk '
	function token(   c, q, out) {
		sub(/^[ \t]+/, "", line)
		if (line == "" || substr(line, 1, 1) == "#") return ""
		out = ""
		while (line != "") {
			c = substr(line, 1, 1)
			if (c == " " || c == "\t") break
			if (c == "\x27" || c == "\"") {
				q = index(substr(line, 2), c)
				if (q == 0) { bad = 1; return "" }
				out = out substr(line, 2, q - 1)
				line = substr(line, q + 2)
				continue
			}
			out = out c
			line = substr(line, 2)
		}
		got = 1
		return out
	}
	{
		line = $0; bad = 0
		got = 0; kw = token(); if (!got) next
		got = 0; a = token(); has_a = got
		got = 0; b = token(); has_b = got
		if (bad) { printf "uci: line %d: unterminated quote\n", NR > "/dev/stderr"; exit 1 }
		if (kw == "package") next
		if (kw == "config") { printf "config\t%s\t%s\n", a, (has_b ? b : ""); next }
		if ((kw == "option" || kw == "list") && has_a && has_b) { printf "%s\t%s\t%s\n", kw, a, b; next }
		printf "uci: line %d: cannot parse \"%s\"\n", NR, $0 > "/dev/stderr"; exit 1
	}' "$1"
}

config_load() {
	local file="${UCI_CONFIG_DIR:-/etc/config}/$1"
	local kind a b tab section="" parsed
	tab=$(printf '\t')
	CONFIG_SECTIONS=
	CONFIG_NUM_SECTIONS=0
	[ -f "$file" ] || return 1
	parsed=$(_uci_parse "$file") || return 1
	while IFS="$tab" read -r kind a b; do
		case $kind in
		config)
			CONFIG_NUM_SECTIONS=$((CONFIG_NUM_SECTIONS + 1))
			section=${b:-$(printf 'cfg%02x%04x' "$CONFIG_NUM_SECTIONS" 0)}
			case $section in *[!A-Za-z0-9_]*) echo "uci: bad section name '$section'" >&2; return 1 ;; esac
			CONFIG_SECTIONS="$CONFIG_SECTIONS $section"
			eval "CONFIG_${section}_TYPE=\$a"
			;;
		option)
			case $a in '' | *[!A-Za-z0-9_]*) echo "uci: bad option name '$a'" >&2; return 1 ;; esac
			eval "CONFIG_${section}_${a}=\$b"
			;;
		list)
			case $a in '' | *[!A-Za-z0-9_]*) echo "uci: bad option name '$a'" >&2; return 1 ;; esac
			local n
			eval "n=\$((\${CONFIG_${section}_${a}_LENGTH:-0} + 1))"
			eval "CONFIG_${section}_${a}_LENGTH=\$n"
			eval "CONFIG_${section}_${a}_ITEM${n}=\$b"
			eval "CONFIG_${section}_${a}=\"\${CONFIG_${section}_${a}:+\${CONFIG_${section}_${a}} }\$b\""
			;;
		esac
	done <<EOF
$parsed
EOF
	return 0
}

# config_get VAR SECTION OPTION [DEFAULT]  or  config_get SECTION OPTION (prints)
config_get() {
	case $# in
	2) eval "printf '%s\n' \"\${CONFIG_${1}_${2}}\"" ;;
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
