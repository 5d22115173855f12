namespace Tapdisk.TapCtl;

/// <summary>Usage texts, verbatim from the reference (reference-transcript.md section 1).</summary>
internal static class Usage
{
    public const string Main =
        "usage: tap-ctl COMMAND [OPTIONS]\n" +
        "COMMAND := { list | allocate | free | create | destroy | spawn | attach | detach | open | close | pause | unpause | stats }\n";

    public const string List =
        "usage: list [-h] [-p pid] [-m minor] [-t type] [-f file]\n" +
        "\n" +
        "Lists tapdisks in the following format:\n" +
        "     pid minor state       type file\n";

    public const string Allocate = "usage: allocate\n";

    public const string Free = "usage: free <-m minor>\n";

    public const string Create =
        "usage: create <-a type:/path/to/file> [-d device name] [-R readonly] [-e <minor> stack on existing tapdisk for the parent chain] " +
        "[-r turn on read caching into leaf node] [-2 <path> use secondary image (in mirror mode if no -s)] " +
        "[-s fail over to the secondary image on ENOSPC] [-t request timeout in seconds] [-D no O_DIRECT] " +
        "[-C <path/to/logfile> insert log layer to track changed blocks]\n";

    public const string Destroy = "usage: destroy <-p pid> <-m minor> [-t timeout secs]\n";

    public const string Spawn = "usage: spawn\n";

    public const string Attach = "usage: attach <-p pid> <-m minor>\n";

    public const string Detach = "usage: detach <-p pid> <-m minor>\n";

    public const string Open =
        "usage: open <-p pid> <-m minor> <-a type:/path/to/file> [-R readonly] [-e <minor> stack on existing tapdisk for the parent chain] " +
        "[-r turn on read caching into leaf node] [-2 <path> use secondary image (in mirror mode if no -s)] " +
        "[-s fail over to the secondary image on ENOSPC] [-t request timeout in seconds] [-D no O_DIRECT] " +
        "[-C </path/to/logfile> insert log layer to track changed blocks] [-E read encryption key from stdin]\n";

    public const string Close = "usage: close <-p pid> <-m minor> [-f force] [-t timeout secs]\n";

    public const string Pause = "usage: pause <-p pid> <-m minor> [-t timeout secs]\n";

    public const string Unpause =
        "usage: unpause <-p pid> <-m minor> [-a type:/path/to/file] [-2 secondary] " +
        "[-c </path/to/logfile> insert log layer to track changed blocks]\n";

    public const string Stats =
        "usage: stats <-p pid> <-m minor>\n" +
        "\n" +
        "Prints a Python dictionary with the VBD stats. The images are listed in reverse order (leaf to root)\n";
}
