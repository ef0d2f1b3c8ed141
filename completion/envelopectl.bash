# Bash completion for envelopectl(1): commands, keys subcommands, each command's options, and
# directories or files for the positional arguments. Installed by `cmake --install` as
# share/bash-completion/completions/envelopectl (loaded on demand by bash-completion); or
# `source` it from ~/.bashrc. Uses only bash builtins (no bash-completion helpers).

_envelopectl_options() {
  local common="--keyfile --passfile --insecure-keyfile --master-command --pkcs11-module \
--pkcs11-token --pkcs11-key --pin-file --kmip-server --kmip-key-id --tls-cert --tls-key --tls-ca \
--recovery-key --quiet --help"
  local new="--new-keyfile --new-passfile --new-master-command \
--new-pkcs11-module --new-pkcs11-token --new-pkcs11-key --new-pin-file --pkcs11-create-key \
--new-kmip-server --new-kmip-key-id --new-tls-cert --new-tls-key --new-tls-ca --kmip-create-key"
  case "$1" in
    '') echo "--help --version" ;;
    init) echo "$common --chunk-size --plaintext-names --pkcs11-create-key --kmip-create-key \
--new-recovery-key --output" ;;
    inspect | ls) echo "$common --json" ;;
    'keys list') echo "$common --json --check --prometheus" ;;
    'keys rotate') echo "$common --json" ;;
    'keys retire') echo "$common --kek-version --jobs --destroy-old-master $new" ;;
    'keys change-master') echo "$common $new" ;;
    'keys add-master') echo "$common $new --new-recovery-key --output --json" ;;
    'keys remove-master') echo "$common --slot" ;;
    'keys destroy-old-master') echo "$common" ;;
    'keys policy') echo "$common --rotate-after-days --audit-log --json" ;;
    keys) echo "--help" ;;
    rewrap) echo "$common --jobs --shard --json" ;;
    verify) echo "$common --json --jobs" ;;
    audit) echo "$common --json --jobs --prometheus" ;;
    decrypt) echo "$common --output --same-owner --jobs" ;;
    quiesce) echo "--timeout --quiet --help" ;;
    *) echo "$common" ;;
  esac
}

_envelopectl() {
  local cur=${COMP_WORDS[COMP_CWORD]}
  local prev=${COMP_WORDS[COMP_CWORD - 1]}
  local takes_value=" --keyfile --passfile --new-keyfile --new-passfile --kek-version --shard \
--jobs --chunk-size --rotate-after-days --audit-log --timeout -o --output --master-command \
--pkcs11-module --pkcs11-token --pkcs11-key --pin-file --new-master-command --new-pkcs11-module \
--new-pkcs11-token --new-pkcs11-key --new-pin-file --kmip-server --kmip-key-id --tls-cert --tls-key \
--tls-ca --new-kmip-server --new-kmip-key-id --new-tls-cert --new-tls-key --new-tls-ca "
  local i word command="" sub=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    word=${COMP_WORDS[i]}
    if [[ $takes_value == *" $word "* ]]; then
      ((i++))
      continue
    fi
    [[ $word == -* ]] && continue
    if [[ -z $command ]]; then
      command=$word
    elif [[ $command == keys && -z $sub ]]; then
      sub=$word
    fi
  done
  local IFS=$'\n'
  COMPREPLY=()
  case $prev in
    --keyfile | --passfile | --new-keyfile | --new-passfile | -o | --output | --pkcs11-module | \
      --pin-file | --new-pkcs11-module | --new-pin-file | --tls-cert | --tls-key | --tls-ca | \
      --new-tls-cert | --new-tls-key | --new-tls-ca)
      compopt -o filenames 2>/dev/null
      COMPREPLY=($(compgen -f -- "$cur"))
      return 0
      ;;
    --audit-log)
      COMPREPLY=($(compgen -W $'on\noff' -- "$cur"))
      return 0
      ;;
    --chunk-size)
      COMPREPLY=($(compgen -W $'4K\n8K\n16K\n32K\n64K\n128K\n256K\n512K\n1M' -- "$cur"))
      return 0
      ;;
    --kek-version | --jobs | --shard | --rotate-after-days)
      return 0
      ;;
  esac
  if [[ $cur == -* ]]; then
    local scope=$command
    [[ -n $sub ]] && scope="$command $sub"
    COMPREPLY=($(IFS=' '; compgen -W "$(_envelopectl_options "$scope")" -- "$cur"))
    return 0
  fi
  if [[ -z $command ]]; then
    COMPREPLY=($(compgen -W $'init\ninspect\nkeys\nrewrap\nverify\naudit\ndecrypt\nls\nquiesce' -- "$cur"))
    return 0
  fi
  if [[ $command == keys && -z $sub ]]; then
    COMPREPLY=($(compgen -W $'list\nrotate\nretire\nchange-master\nadd-master\nremove-master\ndestroy-old-master\npolicy' -- "$cur"))
    return 0
  fi
  compopt -o filenames 2>/dev/null
  case $command in
    inspect | decrypt) COMPREPLY=($(compgen -f -- "$cur")) ;;  # a cipher file (or dir)
    *) COMPREPLY=($(compgen -d -- "$cur")) ;;                   # a cipher dir
  esac
  return 0
}

complete -F _envelopectl envelopectl
