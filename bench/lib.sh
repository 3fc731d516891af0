# Helpers both benchmark scripts use to print their result table.
# Sourced by bench_streams.sh and bench_cluster.sh.

# pass EXPR: PASS if the awk expression holds, else MISS
pass() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo MISS; fi; }

format_table() {
	printf '%s\n' "${TABLE[@]}" | awk -F'\t' '
		{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } if (NF > nf) nf = NF }
		END {
			for (r = 1; r <= NR; r++) {
				line = ""
				for (i = 1; i <= nf; i++) {
					c = cell[r, i]
					# numbers right-aligned, text left-aligned
					if (i > 1 && i <= 4) line = line sprintf("%*s", w[i], c); else line = line sprintf("%-*s", w[i], c)
					if (i < nf) line = line " | "
				}
				sub(/ +$/, "", line); print line
				if (r == 1) { sep = ""; for (i = 1; i <= nf; i++) { sep = sep sprintf("%*s", w[i], ""); if (i < nf) sep = sep "-+-" } gsub(/ /, "-", sep); print sep }
			}
		}'
}
