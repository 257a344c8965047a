package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/paystream/paystream/internal/config"
)

// writeCompletion prints a completion script for shell, made from the
// command table and each command's flags, so it cannot fall behind them.
//
//	source <(starter completion bash)
//	starter completion zsh > "${fpath[1]}/_starter"
//	starter completion fish > ~/.config/fish/completions/starter.fish
func writeCompletion(out io.Writer, shell string) error {
	words, flags := completionWords()
	switch shell {
	case "bash":
		var cases strings.Builder
		for _, w := range words {
			fmt.Fprintf(&cases, "    %s) flags=%q ;;\n", w, strings.Join(flags[w], " "))
		}
		_, err := fmt.Fprintf(out, bashScript, strings.Join(words, " "), cases.String(), strings.Join(words, " "))
		return err
	case "zsh":
		// zsh runs bash completions through bashcompinit.
		fmt.Fprintln(out, "#compdef starter\nautoload -U +X bashcompinit && bashcompinit")
		return writeCompletion(out, "bash")
	case "fish":
		fmt.Fprintln(out, "complete -c starter -f")
		for _, c := range commands {
			top, sub, _ := strings.Cut(c.name, " ")
			if sub != "" {
				fmt.Fprintf(out, "complete -c starter -n '__fish_seen_subcommand_from %s' -a %s -d %q\n", top, sub, c.help)
				continue
			}
			fmt.Fprintf(out, "complete -c starter -n '__fish_use_subcommand' -a %s -d %q\n", top, c.help)
		}
		fmt.Fprintln(out, "complete -c starter -n '__fish_use_subcommand' -a schema -d 'apply or print the BigQuery schema'")
		for _, w := range words {
			for _, f := range flags[w] {
				fmt.Fprintf(out, "complete -c starter -n '__fish_seen_subcommand_from %s' -l %s\n", w, strings.TrimPrefix(f, "--"))
			}
		}
		return nil
	}
	return config.Usage(errors.New("completion supports bash, zsh and fish, not " + shell))
}

// completionWords returns the first words of the commands and, for each,
// the flags of its command(s).
func completionWords() ([]string, map[string][]string) {
	var words []string
	flags := map[string][]string{}
	for _, c := range commands {
		top, _, _ := strings.Cut(c.name, " ")
		if !slices.Contains(words, top) {
			words = append(words, top)
		}
		fs, _, _, ok := commandFlags(c.name)
		if !ok {
			continue
		}
		fs.VisitAll(func(f *flag.Flag) {
			if !slices.Contains(flags[top], "--"+f.Name) {
				flags[top] = append(flags[top], "--"+f.Name)
			}
		})
	}
	return words, flags
}

const bashScript = `# bash completion for starter; load with: source <(starter completion bash)
_starter() {
  local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]} flags=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "%s help" -- "$cur"))
    return
  fi
  case "$cmd" in
%s  esac
  if [ "$cmd" = schema ] && [ "$COMP_CWORD" -eq 2 ]; then
    COMPREPLY=($(compgen -W "apply print" -- "$cur"))
  elif [ "$cmd" = help ] && [ "$COMP_CWORD" -eq 2 ]; then
    COMPREPLY=($(compgen -W "%s" -- "$cur"))
  elif [ "$cmd" = completion ] && [ "$COMP_CWORD" -eq 2 ]; then
    COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
  fi
}
complete -F _starter starter
`
