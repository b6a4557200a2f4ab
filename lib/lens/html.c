/* html.c: the HTML report's page, lib/lens/report.html, built into the library as it is (the
 * assembler's .incbin: no generated source, no copy to keep in step). report.c writes the page
 * with the JSON report where its data marker is; tools/pm-report fills the same file from saved
 * JSON reports. The path is the build's working directory's: the Makefile builds from the top. */
#include "lens/lens.h"

__asm__(".section .rodata\n"
        ".global _pm_html_page\n.hidden _pm_html_page\n.type _pm_html_page, @object\n"
        "_pm_html_page:\n.incbin \"lib/lens/report.html\"\n.byte 0\n"
        ".global _pm_html_page_end\n.hidden _pm_html_page_end\n_pm_html_page_end:\n"
        ".previous\n");
