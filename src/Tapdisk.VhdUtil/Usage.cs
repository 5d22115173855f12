namespace Tapdisk.VhdUtil;

/// <summary>blktap's usage texts, verbatim (reference-transcript.md section 3).</summary>
internal static class Usage
{
    public const string Main = "usage: vhd-util COMMAND [OPTIONS]\nCOMMAND := { create | snapshot | query | read | set | repair | resize | fill | coalesce | modify | scan | check | revert | key | copy }\n";
    public const string Create = "options: <-n name> <-s size (MB)> [-r reserve] [-h help] [<-S size (MB) for metadata preallocation (see vhd-util resize)>]\n";
    public const string Snapshot = "options: <-n name> <-p parent name> [-l snapshot depth limit] [-m parent_is_raw] [-S size (MB) for metadata preallocation (see vhd-util resize)] [-e link to supplied parent name even if it's empty] [-h help]\n";
    public const string Query = "options: <-n name> [-v print virtual size (in MB)] [-s print physical utilization (bytes)] [-p print parent] [-f print fields] [-m print marker] [-d print chain depth] [-S print max virtual size (MB) for fast resize] [-a print allocated block count] [-u don't resolve parent path] [-h help]\n";
    public const string Read = "options:\n-h          help\n-n          name\n-p          print VHD headers\n-t sec      translate logical sector to VHD location\n-b blk      print bat entry\n-B          print entire bat as a bitmap\n-m blk      print bitmap\n-i sec      test bitmap for logical sector\n-e sec      output extent list of allocated logical sectors\n-a          print batmap\n-j blk      test batmap for block\n-d blk      print data\n-c num      num units\n-r sec      read num sectors at sec\n-R byte     read num bytes at byte\n-x          print in hex\n";
    public const string Set = "options: <-n name> <-f field> <-v value> [-h help]\n";
    public const string Check = "options: -n <file> [-i ignore missing primary footers] [-I ignore parent uuids] [-t ignore timestamps] [-B do not check BAT for overlapping (precludes -s, -b)] [-p check parents] [-b check bitmaps] [-s stats] [-h help]\n";
    public const string Repair = "options: <-n name> <-b use the back-up footer> [-h help]\n";
    public const string Resize = "options: <-n name> <-s size (in MB)> (<-j journal>|<-f fast>) [-h help]\n\nThe resize operation can only be performed offline and must be journaled because resizing the metadata might require moving data blocks. However, if a VHD was created with -S <msize> option (during vhd-util create/snapshot), which preallocates the metadata for growing the VHD up to size <msize>, then resizing such a VHD up to <msize> can be performed online without journaling (-f option).\n";
    public const string Coalesce = "options: <-n name> [-s sparse] [-p progress] [-h help]\n";
    public const string Scan = "usage: [OPTIONS] FILES\noptions: [-m match filter] [-f fast] [-c continue on failure] [-l LVM volume] [-p pretty print] [-a scan parents] [-v verbose] [-h help] [-M show markers]\n";
    public const string Revert = "options: <-n name> <-j journal> [-h help]\n";
    public const string Fill = "options: <-n name> [-h help] [-b initialise the BAT and bitmaps, don't write to the data blocks (much faster)] [-f start intialisation from this sector, only usable with -b] [-t intialise up to this sector (inclusive), only usable with -b] [-B ignore the 2 TB limit, only usable with -b]\n";
    public const string Modify = "*** Dangerous operations, use with care ***\noptions: <-n name> [-p NEW_PARENT set parent [-m raw]] [-s NEW_SIZE set size] [-z zero (kill data)] [-h help]\n";
}
