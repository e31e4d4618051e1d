"""Reading ``git format-patch`` files, for the tests that keep each source patch in step with the package."""

from __future__ import annotations

import re


def added_files(patch_text: str) -> dict[str, str]:
    """The files a ``git format-patch`` text creates (``new file mode``), as ``{path: content}``.

    A created file is a single hunk of ``+`` lines; a ``\\ No newline at end of file`` line after it means
    the file does not end with a newline.
    """
    files: dict[str, str] = {}
    for section in re.split(r"^diff --git ", patch_text, flags=re.MULTILINE)[1:]:
        header, _, body = section.partition("\n@@ ")
        if "\nnew file mode" not in header:
            continue
        path = re.search(r"^\+\+\+ b/(\S+)$", header, flags=re.MULTILINE).group(1)
        lines, no_newline = [], False
        for line in body.split("\n")[1:]:  # the first line is the rest of the hunk header
            if line.startswith("+"):
                lines.append(line[1:])
            elif line.startswith("\\ No newline"):
                no_newline = True
            else:
                break  # end of the hunk: the next section, or the format-patch trailer
        files[path] = "\n".join(lines) + ("" if no_newline else "\n")
    return files
