# Drop the paragraph macros scdoc writes where no paragraph follows or where
# one has just begun (after .TH, .SH or .SS; before .SH, .SS, .RE, another
# .P or the end): mandoc -T lint -W warning reports each, and they render
# as nothing anyway.
{ line[NR] = $0 }
END {
	for (i = 1; i <= NR; i++) {
		if (line[i] == ".P") {
			before = i > 1 ? line[i - 1] : ""
			after = i < NR ? line[i + 1] : ""
			if (before ~ /^\.(TH|SH|SS)( |$)/ || after ~ /^\.(SH|SS|RE|P|TH)( |$)/ || after == "")
				continue
		}
		print line[i]
	}
}
