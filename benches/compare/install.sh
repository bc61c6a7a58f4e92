# Sourced by the comparison scripts: installs the commands they need (each
# a Debian package of the same name) that are not on PATH, with apt, as
# root or through sudo; exits 2 if neither is possible.
install_missing() { # command...
  local missing=() command sudo=""
  for command in "$@"; do
    command -v "$command" >/dev/null 2>&1 || missing+=("$command")
  done
  [ ${#missing[@]} -eq 0 ] && return
  [ "$(id -u)" -ne 0 ] && { sudo -n true 2>/dev/null && sudo="sudo -n" || { echo "need root or sudo to install ${missing[*]}" >&2; exit 2; }; }
  $sudo apt-get install -y "${missing[@]}" >/dev/null
}
